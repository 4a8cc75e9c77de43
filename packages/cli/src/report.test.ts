/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
// The page functions below run in the browser (puppeteer evaluates them there).
import * as fs from 'fs';
import * as path from 'path';
import puppeteer, { type Browser } from 'puppeteer-core';
import './test-utils/test-plugins';
import { planExperiment } from './config';
import { escapeHtml, REPORT_FILE, reportFromFolder, vegaBrowserBundle } from './report';
import { runExperiment } from './run-experiment';
import type { ExperimentSummary } from './summary';
import { chromiumSkipReason, findChromium } from './test-utils/chromium';
import { CaptureStream, makeTempDir, tinyConfig } from './test-utils/helpers';

const tmp = makeTempDir();
afterAll(() => tmp.cleanup());

let dir: string;
let summary: ExperimentSummary;

beforeAll(async () => {
  dir = path.join(tmp.dir, 'tiny');
  const plan = planExperiment(tinyConfig({ seeds: [0, 1], output: { dir, pixelRatio: 1, width: 400, height: 250 } }));
  summary = (await runExperiment(plan, { stdout: new CaptureStream(false), initBackend: false })).summary;
});

describe('report.html', () => {
  it('is written at the end of a run, self-contained: no external script, style, image or link', () => {
    const html = fs.readFileSync(path.join(dir, REPORT_FILE), 'utf8');
    expect(html.startsWith('<!DOCTYPE html>')).toBe(true);
    expect(html).toContain(vegaBrowserBundle());
    const tags = html.match(/<(script|link|img|iframe)\b[^>]*>/g) ?? [];
    expect(tags.filter((t) => /\b(src|href)\s*=/.test(t))).toEqual([]);
    // Labels are escaped in the tables (the second method is called 'half <step>').
    expect(html).toContain('<td>half &lt;step&gt;</td>');
    expect(html).not.toMatch(/<td>half <step>/);
  });

  it('is rewritten by reportFromFolder from the folder’s files, with the same tables', async () => {
    const file = path.join(dir, REPORT_FILE);
    const tables = (html: string): string => html.slice(html.indexOf('<h2>Methods</h2>'), html.indexOf('<h2>Charts</h2>'));
    const before = tables(fs.readFileSync(file, 'utf8'));
    fs.rmSync(file);
    const notes: string[] = [];
    const written = await reportFromFolder(dir, { plots: false, onNote: (l) => notes.push(l) });
    expect(written).toEqual([file]);
    expect(tables(fs.readFileSync(file, 'utf8'))).toBe(before);
  });

  it('names what is wrong with a folder that is not a results folder', async () => {
    await expect(reportFromFolder(path.join(tmp.dir, 'nowhere'))).rejects.toThrow(/report: '.*nowhere' is not a results folder/);
    const empty = path.join(tmp.dir, 'empty');
    fs.mkdirSync(empty);
    await expect(reportFromFolder(empty)).rejects.toThrow(/no summary\.json at/);
  });

  it('escapes text for HTML', () => {
    expect(escapeHtml(`a<b>&"c'`)).toBe('a&lt;b&gt;&amp;&quot;c&#39;');
  });
});

const skip = chromiumSkipReason();
if (skip) console.warn(skip);
const describeBrowser = skip ? describe.skip : describe;

describeBrowser('report.html in headless chromium', () => {
  let browser: Browser;
  beforeAll(async () => {
    browser = await puppeteer.launch({
      executablePath: findChromium() as string,
      headless: true,
      // As root (CI) chromium needs --no-sandbox.
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
    });
  });
  afterAll(async () => {
    await browser?.close();
  });

  it('loads offline without errors, draws every chart, lists every run, and answers the mouse', async () => {
    const page = await browser.newPage();
    await page.setViewport({ width: 1200, height: 900 });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(`page error: ${(e as Error).message}`));
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warn') errors.push(`console ${m.type()}: ${m.text()}`);
    });
    // Offline: the page may load itself and nothing else.
    const url = `file://${path.join(dir, REPORT_FILE)}`;
    const requests: string[] = [];
    await page.setRequestInterception(true);
    page.on('request', (r) => {
      if (r.url() === url || r.url().startsWith('data:')) {
        void r.continue();
      } else {
        requests.push(r.url());
        void r.abort();
      }
    });
    await page.goto(url, { waitUntil: 'load' });
    await page.waitForFunction(() => document.body.dataset.charts !== 'pending', { timeout: 30000 });
    expect(await page.evaluate(() => document.body.dataset.charts)).toBe('ready');

    const charts = await page.evaluate(() =>
      [...document.querySelectorAll('.chart')].map((c) => {
        const svg = c.querySelector('svg');
        const box = svg?.getBoundingClientRect();
        return {
          key: c.getAttribute('data-key'),
          width: box?.width ?? 0,
          height: box?.height ?? 0,
          lines: [...c.querySelectorAll('g.mark-line.role-mark path')].filter((p) => (p.getAttribute('d') ?? '').length > 10).length,
          legend: [...c.querySelectorAll('g.role-legend-label text')].map((t) => t.textContent),
        };
      }),
    );
    expect(charts.map((c) => c.key)).toEqual(['outer-loss-vs-step', 'outer-loss-vs-time', 'truegradientnorm-vs-step', 'truegradientnorm-vs-time']);
    for (const c of charts) {
      expect([c.width, c.height]).toEqual([400, 250]);
      // Two methods × (two seeds + their mean).
      expect(c.lines).toBe(6);
      expect(c.legend).toEqual(['exact (mean of 2)', 'half <step> (mean of 2)']);
    }

    const runRows = await page.evaluate(() => {
      const runs = [...document.querySelectorAll('h2')].find((h) => h.textContent === 'Runs')?.nextElementSibling;
      return [...(runs?.querySelectorAll('tbody tr') ?? [])].map((tr) => [...tr.querySelectorAll('td')].slice(0, 4).map((td) => td.textContent));
    });
    expect(runRows).toEqual(summary.runs.map((r) => [r.method, String(r.seed), 'completed (steps)', String(r.steps)]));

    // Tooltip: the pointer on a point of the first chart shows its series and values.
    const point = await page.evaluate(() => {
      const p = document.querySelector('#chart-0 g.mark-symbol.role-mark path') as Element;
      p.scrollIntoView({ block: 'center' });
      const r = p.getBoundingClientRect();
      return { x: r.x + r.width / 2, y: r.y + r.height / 2 };
    });
    await page.mouse.move(point.x, point.y);
    await page.waitForFunction(() => getComputedStyle(document.getElementById('tooltip') as Element).display === 'block', { timeout: 5000 });
    expect(await page.evaluate(() => document.getElementById('tooltip')?.textContent)).toMatch(/^series(exact|half <step>) \((seed \d|mean of 2)\)outer step\d+outer loss[-\d.e]+$/);

    // Legend: a click on 'exact (mean of 2)' fades the other method's lines.
    const opacities = (): Promise<Record<string, number[]>> =>
      page.evaluate(() => {
        const out: Record<string, number[]> = {};
        for (const p of document.querySelectorAll('#chart-0 g.mark-line.role-mark path')) {
          const stroke = p.getAttribute('stroke') as string;
          (out[stroke] ??= []).push(Number(getComputedStyle(p).opacity));
        }
        return out;
      });
    const before = await opacities();
    const label = await page.evaluate(() => {
      const t = [...document.querySelectorAll('#chart-0 g.role-legend-label text')].find((e) => e.textContent === 'exact (mean of 2)') as Element;
      const r = t.getBoundingClientRect();
      return { x: r.x + r.width / 2, y: r.y + r.height / 2 };
    });
    await page.mouse.click(label.x, label.y);
    await page.waitForFunction(() => [...document.querySelectorAll('#chart-0 g.mark-line.role-mark path')].some((p) => Number(getComputedStyle(p).opacity) < 0.1), { timeout: 5000 });
    const after = await opacities();
    // First palette colour: exact; second: half <step>.
    expect(after['#1f77b4']).toEqual(before['#1f77b4']);
    expect(Math.max(...before['#ff7f0e'])).toBe(1);
    expect(Math.max(...after['#ff7f0e'])).toBeLessThan(0.1);

    expect(errors).toEqual([]);
    expect(requests).toEqual([]);
    await page.close();
  });
});
