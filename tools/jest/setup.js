// Every test process: decorator metadata for tsyringe, the plain JS `cpu` backend
// (deterministic, always available), and quiet tfjs start-up messages.
require('reflect-metadata');
const tf = require('@tensorflow/tfjs-core');
require('@tensorflow/tfjs');
require('@tensorflow/tfjs-backend-cpu');
tf.env().set('IS_TEST', true);
tf.env().set('PROD', true);
tf.setBackend('cpu');
