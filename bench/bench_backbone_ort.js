// ONNX Runtime side of bench_backbone (fp32, CPU execution provider).
//
// Usage: node bench/bench_backbone_ort.js --threads T --size S --input FILE
// with onnxruntime-node findable by require() (bench_backbone sets
// NODE_PATH to $GRAD_BENCH_ORT/node_modules; install it with
// `npm install --ignore-scripts onnxruntime-node` in that folder).
// FILE holds float32 images, N x 3 x S x S. Prints "ready", then serves
// requests "MODEL.onnx BATCH REPS" on stdin: one warm-up run and REPS timed
// runs on the first BATCH images, answering the best ms per image (or
// "fail"). Exits with 3 when onnxruntime-node cannot be loaded.
'use strict';
let ort;
try {
  ort = require('onnxruntime-node');
} catch (e) {
  process.stderr.write('onnxruntime-node unavailable: ' + e.message + '\n');
  process.exit(3);
}
const fs = require('fs');
const readline = require('readline');

const args = {};
for (let i = 2; i + 1 < process.argv.length; i += 2) args[process.argv[i].slice(2)] = process.argv[i + 1];
const threads = parseInt(args.threads, 10), size = parseInt(args.size, 10);
const raw = fs.readFileSync(args.input);
const data = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
const sessions = {};

async function timeModel(path, batch, reps) {
  if (!sessions[path]) {
    sessions[path] = await ort.InferenceSession.create(path, {
      intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential',
      graphOptimizationLevel: 'all'});
  }
  const s = sessions[path];
  const x = new ort.Tensor('float32', data.subarray(0, batch * 3 * size * size), [batch, 3, size, size]);
  await s.run({x});
  let best = Infinity;
  for (let r = 0; r < reps; r++) {
    const t = process.hrtime.bigint();
    await s.run({x});
    const ms = Number(process.hrtime.bigint() - t) / 1e6;
    if (ms < best) best = ms;
  }
  return best / batch;
}

async function main() {
  process.stdout.write('ready\n');
  const rl = readline.createInterface({input: process.stdin});
  for await (const line of rl) {
    const [path, batch, reps] = line.trim().split(/\s+/);
    try {
      const ms = await timeModel(path, parseInt(batch, 10), parseInt(reps, 10));
      process.stdout.write(ms.toFixed(4) + '\n');
    } catch (e) {
      process.stderr.write('onnxruntime: ' + e.message + '\n');
      process.stdout.write('fail\n');
    }
  }
}
main();
