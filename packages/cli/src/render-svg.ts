import type { ChartLayout, Primitive } from './line-chart';

/** Escapes text for XML content and attribute values. */
export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => {
    switch (c) {
      case '&':
        return '&amp;';
      case '<':
        return '&lt;';
      case '>':
        return '&gt;';
      case '"':
        return '&quot;';
      default:
        return '&apos;';
    }
  });
}

function num(v: number): string {
  return Number.isInteger(v) ? String(v) : v.toFixed(2).replace(/0+$/, '').replace(/\.$/, '');
}

function element(p: Primitive): string {
  switch (p.kind) {
    case 'rect': {
      const fill = p.fill ?? 'none';
      const stroke = p.stroke ? ` stroke="${p.stroke}" stroke-width="${num(p.strokeWidth ?? 1)}"` : '';
      return `<rect x="${num(p.x)}" y="${num(p.y)}" width="${num(p.width)}" height="${num(p.height)}" fill="${fill}"${stroke}/>`;
    }
    case 'polyline': {
      const pts = p.points.map(([x, y]) => `${num(x)},${num(y)}`).join(' ');
      const opacity = p.opacity < 1 ? ` stroke-opacity="${num(p.opacity)}"` : '';
      const cls = p.series !== undefined ? ` class="${p.role}" data-series="${escapeXml(p.series)}"` : ` class="${p.role}"`;
      return `<polyline${cls} points="${pts}" fill="none" stroke="${p.color}" stroke-width="${num(p.width)}"${opacity} stroke-linejoin="round" stroke-linecap="round"/>`;
    }
    case 'text': {
      // `y` is the middle of the capitals; the baseline sits about 0.35 em below it.
      const anchor = p.anchor === 'start' ? '' : ` text-anchor="${p.anchor}"`;
      const weight = p.bold ? ' font-weight="bold"' : '';
      if (p.vertical) {
        return `<text x="${num(p.x + p.size * 0.35)}" y="${num(p.y)}" transform="rotate(-90 ${num(p.x + p.size * 0.35)} ${num(p.y)})" font-size="${num(p.size)}"${anchor}${weight} fill="${p.color}">${escapeXml(p.text)}</text>`;
      }
      return `<text x="${num(p.x)}" y="${num(p.y + p.size * 0.35)}" font-size="${num(p.size)}"${anchor}${weight} fill="${p.color}">${escapeXml(p.text)}</text>`;
    }
  }
}

/** The chart as a standalone SVG document. */
export function renderSvg(layout: ChartLayout): string {
  const body = layout.primitives.map((p) => `  ${element(p)}`).join('\n');
  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n` +
    `<svg xmlns="http://www.w3.org/2000/svg" width="${layout.width}" height="${layout.height}" ` +
    `viewBox="0 0 ${layout.width} ${layout.height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">\n` +
    `${body}\n</svg>\n`
  );
}
