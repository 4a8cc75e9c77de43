import { PNG } from 'pngjs';
import { GLYPH_HEIGHT, GLYPH_WIDTH, GLYPH_ADVANCE, glyph, textWidth } from './bitmap-font';
import type { ChartLayout, TextPrimitive } from './line-chart';

// Local aliases: the pixel loops call these millions of times, and a module-level binding is cheaper to
// reach than the global `Math` in some embeddings (jest's vm sandbox makes each global lookup slow).
const { sqrt, round, min, max, floor, ceil } = Math;

/** `#rrggbb` → [r, g, b]. */
export function parseColor(color: string): [number, number, number] {
  const m = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(color);
  if (!m) throw new Error(`colour must be #rrggbb (got '${color}')`);
  return [parseInt(m[1], 16), parseInt(m[2], 16), parseInt(m[3], 16)];
}

/**
 * An RGBA raster (white to start with) with anti-aliased drawing. Lines are drawn by coverage: a pixel whose centre lies at
 * distance d from the segment gets coverage clamp(w/2 + ½ − d, 0, 1), which gives a line of width w with
 * a one-pixel soft edge; a polyline takes the maximum coverage over its segments, so joints are not drawn
 * twice, then blends its colour once.
 */
export class Raster {
  /** RGBA pixels, row-major, 4 bytes each. */
  readonly data: Uint8Array;
  private readonly coverage: Float32Array;

  constructor(
    /** Width in pixels. */
    readonly width: number,
    /** Height in pixels. */
    readonly height: number,
  ) {
    if (!(Number.isInteger(width) && Number.isInteger(height) && width > 0 && height > 0)) {
      throw new Error(`raster size must be positive integers (got ${width}×${height})`);
    }
    this.data = new Uint8Array(width * height * 4);
    this.coverage = new Float32Array(width * height);
    this.data.fill(255);
  }

  /** Blends colour `rgb` with weight `alpha` into pixel (x, y). */
  blend(x: number, y: number, rgb: readonly [number, number, number], alpha: number): void {
    if (x < 0 || y < 0 || x >= this.width || y >= this.height || alpha <= 0) return;
    const i = (y * this.width + x) * 4;
    const a = min(1, alpha);
    this.data[i] = round(this.data[i] * (1 - a) + rgb[0] * a);
    this.data[i + 1] = round(this.data[i + 1] * (1 - a) + rgb[1] * a);
    this.data[i + 2] = round(this.data[i + 2] * (1 - a) + rgb[2] * a);
  }

  /** The [r, g, b] of pixel (x, y). */
  pixel(x: number, y: number): [number, number, number] {
    const i = (y * this.width + x) * 4;
    return [this.data[i], this.data[i + 1], this.data[i + 2]];
  }

  /** Fills the pixels whose centres lie in [x, x + w) × [y, y + h). */
  fillRect(x: number, y: number, w: number, h: number, rgb: readonly [number, number, number], alpha = 1): void {
    const x0 = max(0, ceil(x - 0.5));
    const x1 = min(this.width, ceil(x + w - 0.5));
    const y0 = max(0, ceil(y - 0.5));
    const y1 = min(this.height, ceil(y + h - 0.5));
    for (let py = y0; py < y1; py++) for (let px = x0; px < x1; px++) this.blend(px, py, rgb, alpha);
  }

  /** Strokes a polyline of the given width (pixels) and opacity. */
  strokePolyline(
    points: readonly (readonly [number, number])[],
    lineWidth: number,
    rgb: readonly [number, number, number],
    opacity = 1,
  ): void {
    if (points.length === 0) return;
    const pts = points.length === 1 ? [points[0], points[0]] : points;
    const hw = max(lineWidth, 0.5) / 2;
    let bx0 = this.width;
    let by0 = this.height;
    let bx1 = -1;
    let by1 = -1;
    for (let k = 0; k + 1 < pts.length; k++) {
      const [ax, ay] = pts[k];
      const [cx, cy] = pts[k + 1];
      const x0 = max(0, floor(min(ax, cx) - hw - 1));
      const x1 = min(this.width - 1, ceil(max(ax, cx) + hw + 1));
      const y0 = max(0, floor(min(ay, cy) - hw - 1));
      const y1 = min(this.height - 1, ceil(max(ay, cy) + hw + 1));
      if (x0 > x1 || y0 > y1) continue;
      bx0 = min(bx0, x0);
      by0 = min(by0, y0);
      bx1 = max(bx1, x1);
      by1 = max(by1, y1);
      const dx = cx - ax;
      const dy = cy - ay;
      const len2 = dx * dx + dy * dy;
      for (let py = y0; py <= y1; py++) {
        const qy = py + 0.5;
        for (let px = x0; px <= x1; px++) {
          const qx = px + 0.5;
          let t = len2 > 0 ? ((qx - ax) * dx + (qy - ay) * dy) / len2 : 0;
          t = t < 0 ? 0 : t > 1 ? 1 : t;
          const ex = qx - (ax + t * dx);
          const ey = qy - (ay + t * dy);
          const d = sqrt(ex * ex + ey * ey);
          const c = hw + 0.5 - d;
          if (c <= 0) continue;
          const idx = py * this.width + px;
          const cov = c > 1 ? 1 : c;
          if (cov > this.coverage[idx]) this.coverage[idx] = cov;
        }
      }
    }
    for (let py = by0; py <= by1; py++) {
      for (let px = bx0; px <= bx1; px++) {
        const idx = py * this.width + px;
        const c = this.coverage[idx];
        if (c > 0) {
          this.blend(px, py, rgb, c * opacity);
          this.coverage[idx] = 0;
        }
      }
    }
  }

  /**
   * Draws text with the built-in bitmap font, each font pixel a `scale`×`scale` block. (x, y) is the
   * anchor: horizontal position by `anchor`, vertical middle of the capitals; `vertical` turns the text by
   * −90° around the anchor (reading bottom to top).
   */
  drawText(
    text: string,
    x: number,
    y: number,
    scale: number,
    rgb: readonly [number, number, number],
    anchor: 'start' | 'middle' | 'end' = 'start',
    options: { vertical?: boolean; bold?: boolean } = {},
  ): void {
    const w = textWidth(text) * scale;
    const u0 = anchor === 'start' ? 0 : anchor === 'middle' ? -w / 2 : -w;
    const v0 = -3.5 * scale;
    const chars = [...text];
    const passes = options.bold ? 2 : 1;
    for (let c = 0; c < chars.length; c++) {
      const rows = glyph(chars[c]);
      for (let gy = 0; gy < GLYPH_HEIGHT; gy++) {
        const bits = rows[gy];
        if (!bits) continue;
        for (let gx = 0; gx < GLYPH_WIDTH; gx++) {
          if (((bits >> (GLYPH_WIDTH - 1 - gx)) & 1) === 0) continue;
          for (let pass = 0; pass < passes; pass++) {
            const u = u0 + (c * GLYPH_ADVANCE + gx) * scale + pass;
            const v = v0 + gy * scale;
            if (options.vertical) {
              // Local (u along the text, v downward) → device (x + v, y − u).
              this.fillRect(x + v, y - u - scale, scale, scale, rgb);
            } else {
              this.fillRect(x + u, y + v, scale, scale, rgb);
            }
          }
        }
      }
    }
  }

  /** PNG bytes (8-bit RGB). */
  encode(): Buffer {
    const png = new PNG({ width: this.width, height: this.height });
    png.data = Buffer.from(this.data.buffer, this.data.byteOffset, this.data.byteLength);
    return PNG.sync.write(png, { colorType: 2 });
  }
}

/** Font scale for a text of `size` chart units at `pixelRatio`: capitals about 0.7 em tall. */
export function fontScale(size: number, pixelRatio: number): number {
  return max(1, round((size * pixelRatio) / 10));
}

function drawTextPrimitive(r: Raster, p: TextPrimitive, ratio: number): void {
  r.drawText(p.text, p.x * ratio, p.y * ratio, fontScale(p.size, ratio), parseColor(p.color), p.anchor, {
    vertical: p.vertical,
    bold: p.bold,
  });
}

/** Rasterizes a chart layout; `pixelRatio` device pixels per chart unit. */
export function rasterizeChart(layout: ChartLayout, pixelRatio = 2): Raster {
  const r = new Raster(round(layout.width * pixelRatio), round(layout.height * pixelRatio));
  for (const p of layout.primitives) {
    if (p.kind === 'rect') {
      if (p.fill) r.fillRect(p.x * pixelRatio, p.y * pixelRatio, p.width * pixelRatio, p.height * pixelRatio, parseColor(p.fill));
      if (p.stroke) {
        const x0 = p.x * pixelRatio;
        const y0 = p.y * pixelRatio;
        const x1 = (p.x + p.width) * pixelRatio;
        const y1 = (p.y + p.height) * pixelRatio;
        r.strokePolyline(
          [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]],
          (p.strokeWidth ?? 1) * pixelRatio,
          parseColor(p.stroke),
        );
      }
    } else if (p.kind === 'polyline') {
      r.strokePolyline(
        p.points.map(([x, y]) => [x * pixelRatio, y * pixelRatio] as const),
        p.width * pixelRatio,
        parseColor(p.color),
        p.opacity,
      );
    } else {
      drawTextPrimitive(r, p, pixelRatio);
    }
  }
  return r;
}

/** The chart as PNG bytes. */
export function renderPng(layout: ChartLayout, pixelRatio = 2): Buffer {
  return rasterizeChart(layout, pixelRatio).encode();
}
