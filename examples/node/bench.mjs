#!/usr/bin/env node
// Throughput harness for benchmarks/node_vs_predictor.py: loads MODEL_DIR once through classify.mjs's
// TnewsClassifier, warms up, prints {"ready": ...}, then times one pass over all titles of TITLES_FILE
// (one a line) per line "run" read from stdin, printing {"seconds": s, "titles": n} for each.
//
//   node bench.mjs MODEL_DIR TITLES_FILE [--threads N] [--batch-size N] [--engine node|web]

import { readFileSync } from 'node:fs';
import readline from 'node:readline';
import { parseArgs } from 'node:util';

import { TnewsClassifier } from './classify.mjs';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    threads: { type: 'string' }, 'batch-size': { type: 'string', default: '32' },
    engine: { type: 'string', default: 'node' },
  },
});
const [dir, titlesFile] = positionals;
const titles = readFileSync(titlesFile, 'utf8').split('\n').filter((t) => t.trim());
const batchSize = Number(values['batch-size']);
const started = performance.now();
const threads = values.threads ? Number(values.threads) : undefined;
const clf = await TnewsClassifier.load(dir, { threads, engine: values.engine });
const loadSeconds = (performance.now() - started) / 1000;
await clf.logits(titles.slice(0, batchSize * 4), batchSize); // warm-up
console.log(JSON.stringify({ ready: true, load_seconds: loadSeconds, titles: titles.length }));
for await (const line of readline.createInterface({ input: process.stdin })) {
  if (line.trim() !== 'run') continue;
  const t0 = performance.now();
  await clf.logits(titles, batchSize);
  console.log(JSON.stringify({ seconds: (performance.now() - t0) / 1000, titles: titles.length }));
}
