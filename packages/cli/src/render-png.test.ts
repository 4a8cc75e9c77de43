import { PNG } from 'pngjs';
import { GLYPH_ADVANCE, GLYPH_HEIGHT, GLYPH_WIDTH, glyphPixel, hasGlyph } from './bitmap-font';
import { layoutLineChart } from './line-chart';
import { parseColor, Raster, rasterizeChart, renderPng } from './render-png';

const BLACK: [number, number, number] = [0, 0, 0];

/** Ink of a pixel drawn in black on white: 0 (white) … 1 (black). */
function ink(r: Raster, x: number, y: number): number {
  return 1 - r.pixel(x, y)[0] / 255;
}

describe('bitmap font', () => {
  it('has a distinct glyph for every printable ASCII character', () => {
    const seen = new Map<string, string>();
    for (let c = 32; c < 127; c++) {
      const ch = String.fromCharCode(c);
      expect(hasGlyph(ch)).toBe(true);
      let key = '';
      for (let y = 0; y < GLYPH_HEIGHT; y++) for (let x = 0; x < GLYPH_WIDTH; x++) key += glyphPixel(ch, x, y) ? '#' : '.';
      if (ch !== ' ') expect(key).toMatch(/#/);
      expect(seen.get(key)).toBeUndefined();
      seen.set(key, ch);
    }
  });
});

describe('Raster', () => {
  it('draws a horizontal line of width 3 exactly over its pixels', () => {
    const r = new Raster(50, 20);
    r.strokePolyline([[5, 10.5], [45, 10.5]], 3, BLACK);
    for (let x = 6; x < 44; x++) {
      for (const y of [9, 10, 11]) expect(ink(r, x, y)).toBeCloseTo(1, 2);
      for (const y of [7, 13]) expect(ink(r, x, y)).toBe(0);
    }
  });

  it('puts the area of the stroke into ink for an anti-aliased diagonal (within 3%)', () => {
    const r = new Raster(120, 120);
    const [ax, ay, bx, by] = [10, 15, 100, 90];
    const width = 2;
    r.strokePolyline([[ax, ay], [bx, by]], width, BLACK);
    let total = 0;
    for (let y = 0; y < r.height; y++) for (let x = 0; x < r.width; x++) total += ink(r, x, y);
    // A segment of length L and width w with round caps covers L·w + π(w/2)² pixels.
    const area = Math.hypot(bx - ax, by - ay) * width + Math.PI * (width / 2) ** 2;
    expect(Math.abs(total - area) / area).toBeLessThan(0.03);
  });

  it('blends a polyline once at its joints (coverage is the maximum, not the sum)', () => {
    const r = new Raster(40, 40);
    r.strokePolyline([[5, 20], [20, 20], [35, 20]], 3, [0, 0, 0], 0.5);
    // Half-opaque black over white: 255·(1 − 0.5) at full coverage, also at the joint.
    expect(r.pixel(20, 20)[0]).toBe(128);
    expect(r.pixel(10, 20)[0]).toBe(128);
  });

  it('draws text glyph by glyph at the requested scale', () => {
    const scale = 2;
    const r = new Raster(60, 30);
    r.drawText('Ab', 4, 15, scale, BLACK, 'start');
    const top = 15 - 3.5 * scale;
    ['A', 'b'].forEach((ch, c) => {
      for (let gy = 0; gy < GLYPH_HEIGHT; gy++) {
        for (let gx = 0; gx < GLYPH_WIDTH; gx++) {
          const x = 4 + (c * GLYPH_ADVANCE + gx) * scale;
          const y = top + gy * scale;
          const expected = glyphPixel(ch, gx, gy) ? 1 : 0;
          for (let dy = 0; dy < scale; dy++) for (let dx = 0; dx < scale; dx++) expect(ink(r, x + dx, y + dy)).toBe(expected);
        }
      }
    });
  });

  it('turns vertical text by −90°: glyph column → upward, glyph row → rightward', () => {
    const r = new Raster(30, 60);
    r.drawText('L', 10, 40, 1, BLACK, 'start', { vertical: true });
    // 'L' has its stem in column 0 and its foot in row 6.
    for (let gy = 0; gy < 7; gy++) {
      for (let gx = 0; gx < GLYPH_WIDTH; gx++) {
        // The font pixel's block starts at x = 10 − 3.5 + gy; it fills the pixel whose centre it covers.
        const x = Math.ceil(10 - 3.5 + gy - 0.5);
        const y = 40 - gx - 1;
        expect(ink(r, x, y)).toBe(glyphPixel('L', gx, gy) ? 1 : 0);
      }
    }
  });

  it('refuses colours that are not #rrggbb', () => {
    expect(parseColor('#1f77b4')).toEqual([0x1f, 0x77, 0xb4]);
    expect(() => parseColor('red')).toThrow(/#rrggbb/);
  });
});

describe('renderPng', () => {
  const red = '#ff0000';
  const blue = '#0000ff';
  const layout = layoutLineChart(
    [
      { label: 'red', color: red, points: [[0, 1], [10, 4], [20, 2], [30, 8]] },
      { label: 'blue', color: blue, points: [[0, 6], [10, 5], [20, 7], [30, 3]] },
    ],
    { title: 'two series', xLabel: 'step', yLabel: 'value', width: 400, height: 260 },
  );

  // Encoding is slow inside jest's sandbox (pngjs reaches globals in its loops): encode once.
  const ratio = 2;
  let png: PNG;
  beforeAll(() => {
    png = PNG.sync.read(renderPng(layout, ratio));
  });

  it('encodes a PNG of the chart size times the pixel ratio that pngjs decodes', () => {
    expect(png.width).toBe(800);
    expect(png.height).toBe(520);
  });

  it('draws each series through the pixels of its data points', () => {
    const at = (x: number, y: number): number[] => {
      const i = (Math.floor(y) * png.width + Math.floor(x)) * 4;
      return [png.data[i], png.data[i + 1], png.data[i + 2]];
    };
    const check = (x: number, y: number, rgb: [number, number, number]): void => {
      const px = at(layout.xAxis.toChart(x) * ratio, layout.yAxis.toChart(y) * ratio);
      // A series point may lie under a later series or a grid line's blend; allow a tolerance.
      px.forEach((v, k) => expect(Math.abs(v - rgb[k])).toBeLessThan(40));
    };
    check(10, 4, [255, 0, 0]);
    check(20, 2, [255, 0, 0]);
    check(10, 5, [0, 0, 255]);
    check(30, 3, [0, 0, 255]);
    // Many pixels carry each colour (lines, not dots).
    let redCount = 0;
    let blueCount = 0;
    for (let i = 0; i < png.data.length; i += 4) {
      const [r, g, b] = [png.data[i], png.data[i + 1], png.data[i + 2]];
      if (r > 200 && g < 60 && b < 60) redCount++;
      if (b > 200 && r < 60 && g < 60) blueCount++;
    }
    expect(redCount).toBeGreaterThan(500);
    expect(blueCount).toBeGreaterThan(500);
  });

  it('renders the same primitives as the layout (background white, text dark)', () => {
    const r = rasterizeChart(layout, 1);
    expect(r.pixel(1, 1)).toEqual([255, 255, 255]);
    let dark = 0;
    for (let y = 0; y < 30; y++) for (let x = 0; x < r.width; x++) if (r.pixel(x, y)[0] < 100) dark++;
    expect(dark).toBeGreaterThan(20); // the title
  });
});
