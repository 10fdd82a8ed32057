/**
 * The bundle's keepNames helper for classes and functions with a prototype only.
 *
 * esbuild's keepNames (scripts/bundle.mjs keeps class names as the modules give them:
 * errors are told apart by them) wraps every named closure made inside a function in a
 * call to its `__name` helper, an Object.defineProperty of `name` that turns the new
 * closure's map into a dictionary. The overlay's lookup makes such a closure per
 * request and a positive lookup's reply another (its `undo`): that was about a tenth of
 * the daemon's CPU per lookup (README, Performance: what each lever gave). Arrow
 * functions and methods have no prototype, and no `name` anything reads (stack traces
 * use V8's inferred name): the helper leaves them alone. Classes and functions keep
 * exactly the names keepNames gives them.
 */

/** esbuild's helper, as it writes it */
export const NAME_HELPER = 'var __name = (target, value) => __defProp(target, "name", { value, configurable: true });';
export const NAME_HELPER_CLASSES =
  'var __name = (target, value) => target.prototype === undefined ? target : __defProp(target, "name", { value, configurable: true });';

/** `bundle` with the helper replaced; undefined when esbuild's helper is not the one expected */
export function namesForClassesOnly(bundle) {
  return bundle.includes(NAME_HELPER) ? bundle.replace(NAME_HELPER, NAME_HELPER_CLASSES) : undefined;
}
