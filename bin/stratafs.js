#!/usr/bin/env node
'use strict';
// The Node.js side of `stratafs`: bin/stratafs (a shell launcher) runs it.
// eslint-disable-next-line @typescript-eslint/no-require-imports
require('../dist/src/cli/main.js').main(process.argv.slice(2));
