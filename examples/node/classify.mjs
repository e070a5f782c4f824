#!/usr/bin/env node
// Classify news titles with a folder written by `tnews-deploy export`, from Node.js.
//
// transformers.js (@huggingface/transformers, onnxruntime-node underneath) loads the folder as it is:
// model.onnx, tokenizer.json + tokenizer_config.json, config.json (labels). This program reproduces
// tnews_deploy.Predictor exactly, which the plain `pipeline('text-classification', ...)` does not for long
// texts (transformers.js 4.3 truncates by cutting the encoded ids, dropping the final </s> / [SEP]):
//
//   * tokens: the tokenizer with its special tokens; a text of more than `max_length` tokens (manifest.json)
//     loses tokens from the end of its *content*, the special tokens stay (as Hugging Face tokenizers does);
//   * batches: texts sorted by token count, padded to the longest of their batch with config.json's
//     pad_token_id, attention_mask 1 on tokens / 0 on padding, token_type_ids all 0;
//   * probabilities: softmax of the logits; labels from config.json's id2label;
//   * integrity: model.onnx checked against manifest.json's sha256 before loading.
//
// Usage:
//   node classify.mjs MODEL_DIR "北京大学举行毕业典礼" "国足备战世界杯预选赛"
//   node classify.mjs MODEL_DIR < titles.txt        (one title a line, or JSONL with "sentence"/"text")
// Options: --top-k N, --probs (all probabilities, in label-id order), --batch-size N (32),
//          --threads N (onnxruntime intra-op threads; default: onnxruntime's), --no-verify (skip sha256),
//          --engine web (run model.onnx on onnxruntime-web's WebAssembly build, the engine transformers.js uses
//          in browsers, instead of onnxruntime-node; tokenisation and everything else unchanged).
// Output: one JSON line per input, as `tnews-deploy predict` prints them:
//   {"line":1,"text":"北京大学举行毕业典礼","label":"news_edu","label_id":7,"score":0.875}
// A bad input line gets {"line":N,"error":"..."}; the others are still classified and the exit status is 1.
//
// As a library: import { TnewsClassifier } from './classify.mjs';
//   const clf = await TnewsClassifier.load('exports/int8');  await clf.predict(['...'], 1);

import { createHash } from 'node:crypto';
import { createReadStream, readFileSync, realpathSync } from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { AutoModelForSequenceClassification, AutoTokenizer, Tensor, env } from '@huggingface/transformers';

env.allowRemoteModels = false; // a local folder only, never the Hugging Face hub

function readJson(file, what, optional = false) {
  let raw;
  try {
    raw = readFileSync(file, 'utf8');
  } catch (err) {
    if (optional && err.code === 'ENOENT') return null;
    throw new Error(`${file}: missing (${what}). Re-export the model with \`tnews-deploy export\`.`);
  }
  try {
    return JSON.parse(raw);
  } catch (err) {
    throw new Error(`${file}: not valid JSON (${err.message}). Re-export the model.`);
  }
}

async function sha256(file) {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk);
  return hash.digest('hex');
}

function softmax(row) {
  const max = Math.max(...row);
  const exps = row.map((x) => Math.exp(x - max));
  const sum = exps.reduce((a, b) => a + b, 0);
  return exps.map((x) => x / sum);
}

export class TnewsClassifier {
  /**
   * Load an export folder.
   * @param {string} dir folder written by `tnews-deploy export`
   * @param {{threads?: number, verify?: boolean, engine?: string}} options threads: onnxruntime intra-op
   *   threads; verify: check model.onnx against manifest.json's sha256 (default true); engine: 'node'
   *   (onnxruntime-node through transformers.js, default) or 'web' (onnxruntime-web, WebAssembly)
   */
  static async load(dir, { threads = undefined, verify = true, engine = 'node' } = {}) {
    // An absolute path: transformers.js reads a bare relative name ("exports/int8") as a hub model id.
    const folder = path.resolve(dir);
    const manifest = readJson(path.join(folder, 'manifest.json'), 'export manifest', true) ?? {};
    const config = readJson(path.join(folder, 'config.json'), 'model config with the labels');
    if (!config.id2label) throw new Error(`${folder}/config.json: has no id2label; re-export the model.`);
    const expected = manifest.model?.sha256;
    if (verify && expected && (await sha256(path.join(folder, 'model.onnx'))) !== expected) {
      throw new Error(`${folder}/model.onnx: sha256 differs from manifest.json; the file was changed or damaged ` +
        'after export. Re-export it, or copy the whole folder again.');
    }
    const sessionOptions = { interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all' };
    if (threads) sessionOptions.intraOpNumThreads = threads;
    const local = { local_files_only: true };
    const tokenizer = await AutoTokenizer.from_pretrained(folder, local);
    if (engine === 'web') {
      const ort = await import('onnxruntime-web');
      ort.env.wasm.numThreads = threads ?? 1;
      const bytes = new Uint8Array(readFileSync(path.join(folder, 'model.onnx')));
      const options = { executionProviders: ['wasm'], graphOptimizationLevel: 'all' };
      const session = await ort.InferenceSession.create(bytes, options);
      return new TnewsClassifier(folder, manifest, config, tokenizer, null, { ort, session });
    }
    if (engine !== 'node') throw new Error(`engine must be 'node' or 'web', got ${JSON.stringify(engine)}.`);
    // The export's model.onnx sits in the folder itself (subfolder ''), whatever its precision ('fp32' names it).
    const model = await AutoModelForSequenceClassification.from_pretrained(folder, {
      ...local, subfolder: '', dtype: 'fp32', session_options: sessionOptions,
    });
    return new TnewsClassifier(folder, manifest, config, tokenizer, model);
  }

  constructor(folder, manifest, config, tokenizer, model, web = null) {
    this.folder = folder;
    this.manifest = manifest;
    this.labels = Object.keys(config.id2label).sort((a, b) => a - b).map((k) => config.id2label[k]);
    this.padId = config.pad_token_id || 0;
    this.maxLength = manifest.max_length || Math.min(config.max_position_embeddings ?? 512, 512);
    this.tokenizer = tokenizer;
    this.model = model; // transformers.js (onnxruntime-node) ...
    this.web = web; // ... or {ort, session} of onnxruntime-web
    // Where the tokenizer puts its special tokens around one text (BERT: [CLS] … [SEP]; XLM-R/e5: <s> … </s>).
    const probe = 'a';
    const full = tokenizer.encode(probe);
    const bare = tokenizer.encode(probe, { add_special_tokens: false });
    const front = full.findIndex((_, i) => bare.every((id, j) => full[i + j] === id));
    this.prefix = full.slice(0, front);
    this.suffix = full.slice(front + bare.length);
  }

  /** Token ids of one text: special tokens kept, content cut so that the whole fits in maxLength. */
  encode(text) {
    const content = this.tokenizer.encode(text, { add_special_tokens: false });
    const room = this.maxLength - this.prefix.length - this.suffix.length;
    return [...this.prefix, ...content.slice(0, room), ...this.suffix];
  }

  /** Logits (an array of number[] per text, in input order). */
  async logits(texts, batchSize = 32) {
    const encoded = texts.map((t) => this.encode(t));
    const order = encoded.map((_, i) => i).sort((a, b) => encoded[a].length - encoded[b].length || a - b);
    const out = new Array(texts.length);
    for (let start = 0; start < order.length; start += batchSize) {
      const idx = order.slice(start, start + batchSize);
      const width = encoded[idx[idx.length - 1]].length; // sorted: the last is the longest
      const ids = new BigInt64Array(idx.length * width).fill(BigInt(this.padId));
      const mask = new BigInt64Array(idx.length * width);
      idx.forEach((i, row) => {
        encoded[i].forEach((id, col) => {
          ids[row * width + col] = BigInt(id);
          mask[row * width + col] = 1n;
        });
      });
      const logits = await this.run(ids, mask, [idx.length, width]);
      const n = this.labels.length;
      idx.forEach((i, row) => { out[i] = Array.from(logits.subarray(row * n, (row + 1) * n)); });
    }
    return out;
  }

  /** The model's logits (a flat Float32Array) for one padded batch. */
  async run(ids, mask, dims) {
    if (this.web) {
      const { ort, session } = this.web;
      const feeds = {
        input_ids: new ort.Tensor('int64', ids, dims), attention_mask: new ort.Tensor('int64', mask, dims),
      };
      if (session.inputNames.includes('token_type_ids')) {
        feeds.token_type_ids = new ort.Tensor('int64', new BigInt64Array(ids.length), dims);
      }
      return (await session.run(feeds)).logits.data;
    }
    // token_type_ids, when the model takes them, are filled with zeros by transformers.js.
    const { logits } = await this.model({
      input_ids: new Tensor('int64', ids, dims), attention_mask: new Tensor('int64', mask, dims),
    });
    return logits.data;
  }

  /** Class probabilities per text (number[] in label-id order). */
  async predictProba(texts, batchSize = 32) {
    return (await this.logits(texts, batchSize)).map(softmax);
  }

  /** The topK best classes per text, best first: [{label, label_id, score}, ...]. */
  rank(probs, topK = 1) {
    return probs.map((row) => row.map((score, id) => ({ label: this.labels[id], label_id: id, score }))
      .sort((a, b) => b.score - a.score || a.label_id - b.label_id).slice(0, topK));
  }

  async predict(texts, topK = 1, batchSize = 32) {
    return this.rank(await this.predictProba(texts, batchSize), topK);
  }
}

// ------------------------------------------------------------------------------------------------ command

function record(line, raw, asJson) {
  let text = raw;
  if (asJson) {
    let obj;
    try {
      obj = JSON.parse(raw);
    } catch (err) {
      return { line, error: `invalid JSON (${err.message})` };
    }
    text = obj?.sentence ?? obj?.text;
    if (typeof text !== 'string') return { line, error: 'no "sentence" or "text" string field' };
  }
  return text.trim() ? { line, text } : { line, error: 'empty text' };
}

async function readStdin() {
  const records = [];
  let asJson = null;
  let line = 0;
  for await (const raw of readline.createInterface({ input: process.stdin, crlfDelay: Infinity })) {
    line += 1;
    if (asJson === null && raw.trim()) asJson = raw.trimStart().startsWith('{');
    records.push(record(line, raw, asJson ?? false));
  }
  return records;
}

async function main() {
  const usage = 'usage: node classify.mjs MODEL_DIR [TEXT ...] [--top-k N] [--probs] [--batch-size N] ' +
    '[--threads N] [--no-verify] [--engine node|web]   (no TEXT: one per line from stdin)';
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      'top-k': { type: 'string', default: '1' },
      probs: { type: 'boolean', default: false },
      'batch-size': { type: 'string', default: '32' },
      threads: { type: 'string' },
      'no-verify': { type: 'boolean', default: false },
      engine: { type: 'string', default: 'node' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help || positionals.length === 0) {
    console.error(usage);
    process.exit(values.help ? 0 : 2);
  }
  const [dir, ...texts] = positionals;
  const topK = Number(values['top-k']);
  const batchSize = Number(values['batch-size']);
  const threads = values.threads === undefined ? undefined : Number(values.threads);
  for (const [name, v] of [['--batch-size', batchSize], ['--threads', threads ?? 1], ['--top-k', topK]]) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`${name} must be a whole number >= 1.`);
  }
  const clf = await TnewsClassifier.load(dir, { threads, verify: !values['no-verify'], engine: values.engine });
  if (topK > clf.labels.length) throw new Error(`--top-k must be in 1..${clf.labels.length}.`);

  const records = texts.length ? texts.map((t, i) => record(i + 1, t, false)) : await readStdin();
  const good = records.filter((r) => r.error === undefined);
  const probs = await clf.predictProba(good.map((r) => r.text), batchSize);
  const ranked = clf.rank(probs, topK);
  good.forEach((r, i) => {
    Object.assign(r, topK === 1 ? ranked[i][0] : { predictions: ranked[i] });
    if (values.probs) r.probs = probs[i];
  });
  for (const r of records) process.stdout.write(JSON.stringify(r) + '\n');
  const failed = records.length - good.length;
  if (failed) {
    console.error(`${failed} of ${records.length} input(s) failed; see their "error" fields.`);
    process.exitCode = 1;
  }
}

if (process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err) => {
    console.error(`error: ${err.message}`);
    process.exit(2);
  });
}
