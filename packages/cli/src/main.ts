#!/usr/bin/env node
/**
 * The `bilevel` executable. All logic lives in importable modules (see `runCli`); this file only wires the
 * process: arguments, streams, Ctrl-C and the exit code.
 *
 * First Ctrl-C (or SIGTERM): the current run stops at the end of its step, saves a checkpoint, results so far
 * are written, exit code 130 (`bilevel resume <results>` continues). Second one: exit at once (files already
 * written stay).
 */
import * as tf from '@tensorflow/tfjs-core';
import { runCli } from './cli';

// tfjs's own start-up advice (install tfjs-node…) would duplicate, less precisely, the backend line that
// the command prints; PROD silences tfjs warnings.
tf.env().set('PROD', true);

const controller = new AbortController();
let interrupts = 0;
const onInterrupt = (): void => {
  interrupts += 1;
  if (interrupts === 1) {
    process.stderr.write('\ninterrupted: stopping after the current step (Ctrl-C again to quit at once)\n');
    controller.abort();
  } else {
    process.exit(130);
  }
};
process.on('SIGINT', onInterrupt);
process.on('SIGTERM', onInterrupt);

runCli(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, signal: controller.signal }).then(
  (code) => {
    process.exitCode = code;
    // Leave promptly even if a library keeps a handle open (unref: never delays a natural exit).
    setTimeout(() => process.exit(code), 2000).unref();
  },
  (e: unknown) => {
    process.stderr.write(`bilevel: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  },
);
