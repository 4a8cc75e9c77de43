import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { DataError } from '@bilevel/core';
import { unzipSync } from 'fflate';
import { PNG } from 'pngjs';

/** A decoded image: pixels [height, width, channels] in [0, 1]. */
export interface DecodedImage {
  /** Width in pixels. */
  readonly width: number;
  /** Height in pixels. */
  readonly height: number;
  /** 1 (grey) or 3 (RGB). */
  readonly channels: 1 | 3;
  /** Pixels [height, width, channels], row-major, in [0, 1]. */
  readonly pixels: Float32Array;
}

/**
 * Decodes a PNG (any bit depth and colour type; pngjs expands it to 8-bit RGBA) to `channels` channels:
 * 1 gives the luminance 0.299R + 0.587G + 0.114B, 3 gives RGB. Alpha is ignored.
 */
export function decodePng(bytes: Uint8Array, file: string, channels: 1 | 3): DecodedImage {
  let png: PNG;
  try {
    png = PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  } catch (e) {
    throw new DataError(`${file}: not a readable PNG (${(e as Error).message})`, file);
  }
  const { width, height, data } = png;
  const pixels = new Float32Array(width * height * channels);
  for (let i = 0; i < width * height; i++) {
    const r = data[4 * i] / 255;
    const g = data[4 * i + 1] / 255;
    const b = data[4 * i + 2] / 255;
    if (channels === 1) pixels[i] = 0.299 * r + 0.587 * g + 0.114 * b;
    else {
      pixels[3 * i] = r;
      pixels[3 * i + 1] = g;
      pixels[3 * i + 2] = b;
    }
  }
  return { width, height, channels, pixels };
}

/** Files of a zip archive or a folder tree, by '/'-separated path relative to its root. */
export interface FileTree {
  /** Where the files come from (for error messages). */
  readonly source: string;
  /** Relative paths, sorted. */
  readonly paths: readonly string[];
  /** The bytes of the file at a relative path. */
  read(path: string): Uint8Array;
}

/**
 * Opens a zip archive (unzipped in memory with fflate, keeping only the files `keep` accepts) or a folder
 * (walked recursively; files read on demand).
 */
export function openFileTree(path: string, keep: (relativePath: string) => boolean = () => true): FileTree {
  if (!existsSync(path)) throw new DataError(`${path}: no such file or folder`, path);
  if (statSync(path).isDirectory()) {
    const paths: string[] = [];
    const walk = (dir: string): void => {
      for (const name of readdirSync(dir).sort()) {
        const full = join(dir, name);
        if (statSync(full).isDirectory()) walk(full);
        else {
          const rel = relative(path, full).split(sep).join('/');
          if (keep(rel)) paths.push(rel);
        }
      }
    };
    walk(path);
    return { source: path, paths, read: (p) => readFileSync(join(path, ...p.split('/'))) };
  }
  let files: Record<string, Uint8Array>;
  try {
    files = unzipSync(readFileSync(path), { filter: (f) => !f.name.endsWith('/') && keep(f.name) });
  } catch (e) {
    throw new DataError(`${path}: not a readable zip archive (${(e as Error).message})`, path);
  }
  const paths = Object.keys(files).sort();
  return {
    source: path,
    paths,
    read: (p) => {
      const f = files[p];
      if (!f) throw new DataError(`${path}: no entry '${p}'`, path);
      return f;
    },
  };
}

const IMAGE_EXTENSIONS = /\.(png|jpe?g|bmp|gif|webp)$/i;

/** Whether a path names an image file (any common extension; only PNG can be decoded). */
export function isImagePath(p: string): boolean {
  return IMAGE_EXTENSIONS.test(p);
}

/** Throws a DataError for image formats other than PNG (no JPEG decoder is installed). */
export function assertPng(path: string, source: string): void {
  if (!/\.png$/i.test(path)) {
    throw new DataError(
      `${source}: '${path}' is not a PNG; only PNG images can be decoded (no JPEG decoder is installed) — ` +
        'convert the images to PNG first (e.g. `mogrify -format png *.jpg`)',
      path,
    );
  }
}
