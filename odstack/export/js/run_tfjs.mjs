#!/usr/bin/env node
// Run an odstack TF.js graph model (output/<run>/tfjs/) in Node with pure-JS @tensorflow/tfjs.
//
//   node run_tfjs.mjs --model output/<run>/tfjs --images a.npy b.npy [--backend cpu|wasm]
//                     [--warmup 1] [--repeat 1] [--out results.json]
//
// - The model is read from disk by a custom IOHandler (model.json + its weight shards, handed to
//   tf.io.getModelArtifactsForJSON): no tfjs-node, no HTTP, nothing downloaded.
// - Images are .npy files of uint8, [H, W, 3] (one image) or [N, H, W, 3] (N images of one size),
//   RGB, as numpy.save writes them. Each image runs alone as a [1, H, W, 3] batch (the OD API contract).
// - Outputs are named through signature.json (written by `python -m odstack tfjs`), which maps the
//   converter's output nodes (Identity, Identity_1, ...) to detection_boxes/scores/classes/num_detections.
//   Without it the model.json's own signature keys are used as they are.
// - Prints (or writes to --out) one JSON document: per image the named outputs (shape, dtype, flat data)
//   and latency_ms (input tensor -> every output downloaded, median of --repeat runs), after --warmup
//   untimed runs on the first image. Everything else (tfjs's own messages) goes to stderr.
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';

// tfjs announces "install tfjs-node for speed" with console.log/warn: keep stdout for the JSON result.
const stdoutLog = console.log;
console.log = (...args) => console.error(...args);
console.info = (...args) => console.error(...args);
// executeAsync() warns on every call when a graph needs no async ops: say each distinct warning once.
const warned = new Set();
const warn = console.warn.bind(console);
console.warn = (...args) => {
  const text = args.join(' ');
  if (!warned.has(text)) {
    warned.add(text);
    warn(...args);
  }
};

const require = createRequire(import.meta.url);
const tf = require('@tensorflow/tfjs');

function usage(message) {
  if (message) console.error(`run_tfjs: ${message}`);
  console.error('usage: node run_tfjs.mjs --model DIR --images A.npy [B.npy ...] [--backend cpu|wasm] '
    + '[--signature FILE] [--warmup N] [--repeat N] [--out FILE]');
  process.exit(2);
}

function parseArgs(argv) {
  const options = { images: [], backend: 'cpu', warmup: 1, repeat: 1, model: null, signature: null, out: null };
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) usage(`${arg} needs a value`);
      i += 1;
      return argv[i];
    };
    if (arg === '--model') options.model = value();
    else if (arg === '--signature') options.signature = value();
    else if (arg === '--backend') options.backend = value();
    else if (arg === '--warmup') options.warmup = Number.parseInt(value(), 10);
    else if (arg === '--repeat') options.repeat = Number.parseInt(value(), 10);
    else if (arg === '--out') options.out = value();
    else if (arg === '--images') {
      while (i + 1 < argv.length && !argv[i + 1].startsWith('--')) options.images.push(argv[(i += 1)]);
    } else if (arg === '-h' || arg === '--help') usage();
    else usage(`unknown argument ${arg}`);
  }
  if (!options.model) usage('--model is required');
  if (options.images.length === 0) usage('--images needs at least one .npy file');
  if (!['cpu', 'wasm'].includes(options.backend)) usage(`--backend ${options.backend}: use cpu or wasm`);
  if (!(options.warmup >= 0) || !(options.repeat >= 1)) usage('--warmup must be >= 0 and --repeat >= 1');
  return options;
}

// A load-only IOHandler over a local model directory: model.json + the shards its manifest names.
function fileHandler(modelDir) {
  return {
    async load() {
      const modelJson = JSON.parse(readFileSync(join(modelDir, 'model.json'), 'utf8'));
      return tf.io.getModelArtifactsForJSON(modelJson, async (manifest) => {
        const specs = [];
        const buffers = [];
        for (const group of manifest) {
          specs.push(...group.weights);
          for (const path of group.paths) {
            const bytes = readFileSync(join(modelDir, path));
            buffers.push(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
          }
        }
        return [specs, tf.io.concatenateArrayBuffers(buffers)];
      });
    },
  };
}

// Minimal .npy reader (format 1.0-3.0, C order, uint8 only: what numpy.save writes for an image).
function readNpy(path) {
  const bytes = readFileSync(path);
  if (bytes.readUInt8(0) !== 0x93 || bytes.toString('latin1', 1, 6) !== 'NUMPY') {
    throw new Error(`${path}: not a .npy file`);
  }
  const major = bytes.readUInt8(6);
  const headerLength = major === 1 ? bytes.readUInt16LE(8) : bytes.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const header = bytes.toString('latin1', start, start + headerLength);
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) {
    throw new Error(`${path}: unreadable .npy header ${header.trim()}`);
  }
  if (descr !== '|u1' && descr !== 'u1') throw new Error(`${path}: dtype ${descr}, expected uint8 (|u1)`);
  if (fortran === 'True') throw new Error(`${path}: Fortran order; save a C-contiguous array`);
  const shape = shapeText.split(',').map((s) => s.trim()).filter((s) => s.length > 0).map(Number);
  const data = new Uint8Array(bytes.buffer, bytes.byteOffset + start + headerLength,
    bytes.byteLength - start - headerLength);
  const size = shape.reduce((a, b) => a * b, 1);
  if (data.length !== size) throw new Error(`${path}: ${data.length} bytes of data for shape [${shape}]`);
  if (shape.length === 3 && shape[2] === 3) return [{ shape, data }];
  if (shape.length === 4 && shape[3] === 3) {
    const [n, h, w] = shape;
    const step = h * w * 3;
    return Array.from({ length: n }, (_, k) => ({ shape: [h, w, 3], data: data.subarray(k * step, (k + 1) * step) }));
  }
  throw new Error(`${path}: shape [${shape}], expected [H, W, 3] or [N, H, W, 3] RGB`);
}

// signature.json if there is one, else model.json's signature as the converter wrote it.
function loadSignature(model, modelDir, signaturePath) {
  const path = signaturePath ?? join(modelDir, 'signature.json');
  let inputs;
  let outputs;
  try {
    const signature = JSON.parse(readFileSync(path, 'utf8'));
    inputs = signature.inputs;
    outputs = signature.outputs;
  } catch (error) {
    if (signaturePath || error.code !== 'ENOENT') throw error;
    const sig = model.artifacts.signature ?? {};
    inputs = Object.fromEntries(Object.entries(sig.inputs ?? {}).map(([key, info]) => [key, { name: info.name }]));
    outputs = Object.fromEntries(Object.entries(sig.outputs ?? {}).map(([key, info]) => [key, { name: info.name }]));
  }
  const inputEntries = Object.entries(inputs ?? {});
  if (inputEntries.length !== 1) throw new Error(`expected one model input, the signature has ${inputEntries.length}`);
  return { input: inputEntries[0], outputs: Object.entries(outputs ?? {}) };
}

async function setBackend(name) {
  if (name === 'wasm') {
    const wasm = require('@tensorflow/tfjs-backend-wasm');
    // The .wasm binaries ship in the npm package: point the loader at them, nothing is downloaded.
    wasm.setWasmPaths(`${dirname(require.resolve('@tensorflow/tfjs-backend-wasm'))}/`);
  }
  if (!(await tf.setBackend(name))) throw new Error(`backend ${name} failed to initialise`);
  await tf.ready();
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const modelDir = resolve(options.model);
  await setBackend(options.backend);
  const loadStart = performance.now();
  const model = await tf.loadGraphModel(fileHandler(modelDir));
  const loadMs = performance.now() - loadStart;
  const { input: [inputKey, inputInfo], outputs } = loadSignature(model, modelDir, options.signature);
  const inputName = inputInfo.name.split(':')[0];
  const modelInput = model.inputs.find((i) => i.name === inputName) ?? model.inputs[0];
  const inputDtype = modelInput.dtype === 'float32' ? 'float32' : 'int32'; // tfjs has no uint8: uint8 -> int32
  const outputNames = outputs.map(([, info]) => info.name);

  const images = options.images.flatMap((path) => readNpy(path).map((image) => ({ ...image, path })));

  async function runOnce(image) {
    const start = performance.now();
    const values = tf.tidy(() => tf.tensor(image.data, [1, ...image.shape], 'int32').cast(inputDtype));
    let result;
    try {
      result = await model.executeAsync({ [inputName]: values }, outputNames);
    } finally {
      values.dispose();
    }
    const tensors = Array.isArray(result) ? result : [result];
    const data = await Promise.all(tensors.map((t) => t.data()));
    const elapsed = performance.now() - start;
    const named = {};
    tensors.forEach((tensor, k) => {
      named[outputs[k][0]] = { shape: tensor.shape, dtype: tensor.dtype, data: Array.from(data[k]) };
      tensor.dispose();
    });
    return { named, elapsed };
  }

  for (let k = 0; k < options.warmup; k += 1) await runOnce(images[0]);
  const results = [];
  for (const image of images) {
    const times = [];
    let named;
    for (let r = 0; r < options.repeat; r += 1) {
      ({ named, elapsed: times[r] } = await runOnce(image));
    }
    results.push({ image: image.path, shape: image.shape, latency_ms: median(times), outputs: named });
  }
  const document = {
    tfjs_version: tf.version.tfjs,
    backend: tf.getBackend(),
    node_version: process.version,
    model: modelDir,
    input: { key: inputKey, name: inputName, dtype: inputDtype },
    load_ms: loadMs,
    warmup: options.warmup,
    repeat: options.repeat,
    results,
  };
  const text = JSON.stringify(document);
  if (options.out) writeFileSync(options.out, text);
  else stdoutLog(text);
}

main().catch((error) => {
  console.error(`run_tfjs: error: ${error && error.stack ? error.stack : error}`);
  process.exit(1);
});
