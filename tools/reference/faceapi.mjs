// Reference fixtures for the Rust ports of face-api.js's 68-point landmark net and expression net.
//
// Runs the ORIGINAL model files of npm `@vladmandic/face-api@1.7.15` (`model/face_landmark_68_model*`,
// `model/face_expression_model*`, loaded by face-api's own `loadFromDisk`) in TF.js 4.22.0 with the
// pure-JavaScript CPU backend, through face-api's own code (`dist/face-api.node-wasm.js`, the
// build that takes the external `@tensorflow/tfjs`; the backend is set to `cpu`).
//
// Inputs: the sample images `examples/images/*.jpg` decoded with `jpeg-js`, and the face boxes of
// the RetinaFace reference fixtures (`crates/facedetect/tests/fixtures/retinaface_<image>.safetensors`,
// `detections[:, 0:4]`). For each image with faces:
//
// 1. `faceapi.extractFaceTensors(image, rects)` cuts the faces (box clipped, floored);
// 2. all faces go through one `NetInput` (one batch): `toBatchTensor(112, true)` pads each to a
//    centred square and resizes it to 112x112 (legacy bilinear), then each net runs on it;
// 3. the landmark net's `forwardInput` gives positions relative to each crop (`postProcess`);
//    face-api's composed task `DetectAllFaceLandmarksTask` (fed the same boxes as detections)
//    gives its image-pixel landmarks;
// 4. the expression net's `runNet` gives logits, `forwardInput` the softmax.
//
// Writes `crates/facelandmarks/tests/fixtures/faceapi_landmarks68_<image>.safetensors` and
// `crates/faceexpr/tests/fixtures/faceapi_expression_<image>.safetensors`; the tensors are listed
// in the fixtures' README files. Run: `bash tools/node/setup.sh && node tools/reference/faceapi.mjs`.

import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(join(ROOT, 'tools', 'node', 'package.json'));
const tf = require('@tensorflow/tfjs');
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');
const jpeg = require('jpeg-js');

const MODEL_DIR = join(ROOT, 'tools', 'node', 'node_modules', '@vladmandic', 'face-api', 'model');
const IMAGES = join(ROOT, 'examples', 'images');
const DETECTIONS = join(ROOT, 'crates', 'facedetect', 'tests', 'fixtures');
const OUT_LANDMARKS = join(ROOT, 'crates', 'facelandmarks', 'tests', 'fixtures');
const OUT_EXPRESSION = join(ROOT, 'crates', 'faceexpr', 'tests', 'fixtures');
// Images whose 112x112 input tensors are stored (one face each; keeps the fixtures small).
const WITH_INPUT = new Set(['astronaut', 'grace_hopper']);

/** Reads the f32 tensors of a safetensors file: name -> { shape, data }. */
function readSafetensors(path) {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const out = {};
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__' || info.dtype !== 'F32') continue;
    const [a, b] = info.data_offsets;
    const bytes = buf.subarray(8 + n + a, 8 + n + b);
    const data = new Float32Array(bytes.length / 4);
    for (let i = 0; i < data.length; i += 1) data[i] = bytes.readFloatLE(4 * i);
    out[name] = { shape: info.shape, data };
  }
  return out;
}

/** Writes a safetensors file from name -> { dtype: 'F32' | 'U8', shape, data }, keys sorted. */
function writeSafetensors(path, tensors, metadata) {
  const names = Object.keys(tensors).sort();
  const header = { __metadata__: Object.fromEntries(Object.entries(metadata).sort()) };
  const chunks = [];
  let offset = 0;
  for (const name of names) {
    const { dtype, shape, data } = tensors[name];
    const bytes = dtype === 'F32'
      ? Buffer.from(new Float32Array(data).buffer)
      : Buffer.from(new Uint8Array(data));
    header[name] = { dtype, shape, data_offsets: [offset, offset + bytes.length] };
    chunks.push(bytes);
    offset += bytes.length;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(path, Buffer.concat([len, Buffer.from(json, 'utf8'), ...chunks]));
}

const f32 = (shape, data) => ({ dtype: 'F32', shape, data: Float32Array.from(data) });

async function main() {
  await tf.setBackend('cpu');
  await tf.ready();
  await faceapi.nets.faceLandmark68Net.loadFromDisk(MODEL_DIR);
  await faceapi.nets.faceExpressionNet.loadFromDisk(MODEL_DIR);
  const sha = (p) => createHash('sha256').update(readFileSync(p)).digest('hex');
  const common = {
    runtime: `@tensorflow/tfjs ${tf.version.tfjs}, backend ${tf.getBackend()}; @vladmandic/face-api ${faceapi.version} (dist/face-api.node-wasm.js)`,
    preprocessing: 'extractFaceTensors (box clipped to the image, x/y/width/height floored); toBatchTensor(112, isCenterInputs=true): padToSquare centred with zeros (odd pixel after), resizeBilinear(alignCorners=false, halfPixelCenters=false); (v - [122.782, 117.001, 104.298]) / 255',
    boxes: 'RetinaFace reference detections (crates/facedetect/tests/fixtures/retinaface_<image>.safetensors)',
  };

  for (const file of readdirSync(IMAGES).filter((f) => f.endsWith('.jpg')).sort()) {
    const name = file.replace(/\.jpg$/, '');
    const dets = readSafetensors(join(DETECTIONS, `retinaface_${name}.safetensors`)).detections;
    const count = dets.shape[0];
    if (count === 0) {
      console.log(`${name}: no faces, skipped`);
      continue;
    }
    const decoded = jpeg.decode(readFileSync(join(IMAGES, file)), { useTArray: true, formatAsRGBA: false });
    const { width, height } = decoded;
    const image = tf.tensor3d(Int32Array.from(decoded.data), [height, width, 3], 'int32');
    const boxes = [];
    for (let i = 0; i < count; i += 1) boxes.push(Array.from(dets.data.slice(15 * i, 15 * i + 4)));
    const rects = boxes.map(([x0, y0, x1, y1]) => new faceapi.Rect(x0, y0, x1 - x0, y1 - y0));

    const faces = await faceapi.extractFaceTensors(image, rects);
    const crops = rects.map((r) => r.clipAtImageBorders(width, height));
    const netInput = await faceapi.toNetInput(faces);

    const lmNet = faceapi.nets.faceLandmark68Net;
    const batch = netInput.toBatchTensor(112, true);
    const raw = lmNet.runNet(netInput);
    const relative = lmNet.forwardInput(netInput);

    // face-api's composed task, fed these boxes as detections.
    const parents = boxes.map(([x0, y0, x1, y1], i) => ({
      detection: new faceapi.FaceDetection(
        dets.data[15 * i + 4],
        new faceapi.Rect(x0 / width, y0 / height, (x1 - x0) / width, (y1 - y0) / height),
        { width, height },
      ),
    }));
    const composed = await new faceapi.DetectAllFaceLandmarksTask(Promise.resolve(parents), image, false).run();
    const landmarks = composed.flatMap((r) => r.landmarks.positions.flatMap((p) => [p.x, p.y]));

    const exNet = faceapi.nets.faceExpressionNet;
    const logits = exNet.runNet(netInput);
    const probabilities = exNet.forwardInput(netInput);

    const cropTensors = {};
    crops.forEach((c, i) => {
      cropTensors[`crop_${i}`] = { dtype: 'U8', shape: faces[i].shape, data: faces[i].dataSync() };
    });
    const shared = {
      image_size: f32([2], [width, height]),
      boxes: f32([count, 4], boxes.flat()),
      crops: f32([count, 4], crops.flatMap((c) => [c.x, c.y, c.width, c.height])),
      ...cropTensors,
    };
    const meta = { ...common, image: file, image_sha256: sha(join(IMAGES, file)), faces: String(count) };

    const lmTensors = {
      ...shared,
      raw: f32([count, 136], raw.dataSync()),
      relative: f32([count, 136], relative.dataSync()),
      landmarks: f32([count, 68, 2], landmarks),
    };
    if (WITH_INPUT.has(name)) lmTensors.input = f32(batch.shape, batch.dataSync());
    writeSafetensors(join(OUT_LANDMARKS, `faceapi_landmarks68_${name}.safetensors`), lmTensors, {
      ...meta,
      model: `face_landmark_68_model.bin (sha256 ${sha(join(MODEL_DIR, 'face_landmark_68_model.bin'))})`,
    });
    writeSafetensors(join(OUT_EXPRESSION, `faceapi_expression_${name}.safetensors`), {
      ...shared,
      logits: f32([count, 7], logits.dataSync()),
      probabilities: f32([count, 7], probabilities.dataSync()),
    }, {
      ...meta,
      model: `face_expression_model.bin (sha256 ${sha(join(MODEL_DIR, 'face_expression_model.bin'))})`,
      labels: faceapi.FACE_EXPRESSION_LABELS.join(','),
    });
    const top = Array.from(probabilities.dataSync()).slice(0, 7).map((p) => p.toFixed(3)).join(' ');
    console.log(`${name}: ${count} face(s), ${width}x${height}; first face probabilities [${faceapi.FACE_EXPRESSION_LABELS.join(' ')}] = ${top}`);
    tf.dispose([image, batch, raw, relative, logits, probabilities, ...faces]);
  }
}

await main();
