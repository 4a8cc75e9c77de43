// Every test process: decorator metadata for tsyringe, the plain JS `cpu` backend
// (deterministic, always available), tfjs-core's gradients and chained methods (the bundle that
// @bilevel/core's build makes; made here when a package is tested before core was built), and quiet tfjs
// start-up messages.
require('reflect-metadata');
const tf = require('@tensorflow/tfjs-core');
require('@tensorflow/tfjs-backend-cpu');
require('../../packages/core/scripts/jest-global-setup.js')();
require('../../packages/core/vendor/tfjs-registrations.js');
tf.env().set('IS_TEST', true);
tf.env().set('PROD', true);
tf.setBackend('cpu');
