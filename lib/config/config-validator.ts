/**
 * The configuration validator: `CONFIG_SCHEMA` and its keywords compiled by ajv (defaults are
 * filled in place). Compiling it is a sizeable part of a start, so the build compiles it ahead of
 * time into standalone code (`build/bundle.mjs` writes it with `compileConfigValidator` and bundles
 * it in place of this module); this module compiles it at load wherever that build is not used
 * (the tests, the unbundled `dist/`).
 */
import { Ajv, _, type Options, type ValidateFunction } from 'ajv';
import { CONFIG_KEYWORD_CHECKS, CONFIG_SCHEMA } from './schema.js';

/**
 * Compiles the validator. Each keyword calls its check from `CONFIG_KEYWORD_CHECKS`, referenced
 * in standalone code by that name (the generated module imports it from `schema.js`).
 */
export function compileConfigValidator(options: Options = {}): { ajv: Ajv; validate: ValidateFunction } {
  const ajv = new Ajv({ useDefaults: true, allErrors: true, strict: false, ...options });
  for (const keyword of Object.keys(CONFIG_KEYWORD_CHECKS) as Array<keyof typeof CONFIG_KEYWORD_CHECKS>) {
    ajv.addKeyword({
      keyword,
      code(cxt) {
        const check = cxt.gen.scopeValue('keyword', { ref: CONFIG_KEYWORD_CHECKS[keyword], code: _`CONFIG_KEYWORD_CHECKS[${keyword}]` });
        cxt.fail(_`!${check}(${cxt.data})`);
      },
    });
  }
  return { ajv, validate: ajv.compile(CONFIG_SCHEMA) };
}

/** The validator of a configuration tree. */
export const validateConfig: ValidateFunction = compileConfigValidator().validate;
