module.exports = {
  ...require('../../jest.preset.js')(__dirname),
  globalSetup: require.resolve('./scripts/jest-global-setup.js'),
};
