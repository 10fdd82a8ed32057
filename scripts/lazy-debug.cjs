'use strict';
/**
 * Put in place of the `debug` package inside the start-up bundle (scripts/bundle.mjs):
 * the same createDebug(namespace) loggers, `.enabled` and `createDebug.enable()`, but
 * the package itself (which loads tty, net and os at once: about 5 ms CPU per start)
 * is loaded only when logging can be on: DEBUG set in the environment, or enable()
 * called (-d). Until then a logger does nothing, as debug's own does when off.
 */
/* eslint-disable @typescript-eslint/no-require-imports */
let real;
const load = () => (real ??= require('debug'));
const on = () => real !== undefined || Boolean(process.env.DEBUG);

function createDebug(namespace) {
  let instance;
  const get = () => (instance ??= load()(namespace));
  const logger = (...args) => {
    if (on()) get()(...args);
  };
  Object.defineProperty(logger, 'enabled', { get: () => on() && get().enabled });
  Object.defineProperty(logger, 'namespace', { value: namespace });
  return logger;
}
createDebug.enable = (namespaces) => load().enable(namespaces);
createDebug.disable = () => (real === undefined ? '' : real.disable());
createDebug.enabled = (name) => on() && load().enabled(name);

module.exports = createDebug;
