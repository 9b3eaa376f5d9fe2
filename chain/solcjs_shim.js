#!/usr/bin/env node
// Makes the npm solc module (solcjs) answer like a native `solc`, so py-solc-x can drive it:
//   --version          prints "Version: X.Y.Z" without loading the 8 MB compiler
//   --standard-json    reads the input JSON on stdin, prints only the output JSON
// The solcjs CLI cannot serve: it prints an SMT notice before the JSON and lacks
// --allow-paths. Imports resolve against --base-path (the project root).
"use strict";
const fs = require("fs");
const path = require("path");

function argValue(name) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function findRoot() {
  const candidates = [argValue("--base-path"), process.env.DEEDCHAIN_PROJECT, process.cwd(), __dirname];
  for (const start of candidates) {
    if (!start) continue;
    let dir = path.resolve(start);
    for (;;) {
      if (fs.existsSync(path.join(dir, "node_modules", "solc", "package.json"))) return dir;
      const up = path.dirname(dir);
      if (up === dir) break;
      dir = up;
    }
  }
  process.stderr.write("solcjs shim: no node_modules/solc found; run `npm ci` in the project\n");
  process.exit(2);
}

const root = findRoot();
const solcDir = path.join(root, "node_modules", "solc");

if (process.argv.includes("--version")) {
  // Loading the compiler takes a second; remember its full version beside it.
  const stamp = fs.statSync(path.join(solcDir, "soljson.js"));
  const memo = path.join(solcDir, ".full-version");
  const key = `${stamp.size}:${stamp.mtimeMs}`;
  let version;
  try {
    const [k, v] = fs.readFileSync(memo, "utf8").split("\n");
    if (k === key) version = v;
  } catch (err) {}
  if (!version) {
    version = require(solcDir).version();
    try { fs.writeFileSync(memo, `${key}\n${version}`); } catch (err) {}
  }
  process.stdout.write(`solc, the solidity compiler commandline interface (solcjs)\nVersion: ${version}\n`);
  process.exit(0);
}

if (!process.argv.includes("--standard-json")) {
  process.stderr.write("solcjs shim: only --version and --standard-json are supported\n");
  process.exit(2);
}

const base = path.resolve(argValue("--base-path") || root);
function findImports(importPath) {
  const file = path.resolve(base, importPath);
  if (!file.startsWith(base + path.sep)) return { error: `import outside the project: ${importPath}` };
  try {
    return { contents: fs.readFileSync(file, "utf8") };
  } catch (err) {
    return { error: `file not found: ${importPath}` };
  }
}

const chunks = [];
process.stdin.on("data", (c) => chunks.push(c));
process.stdin.on("end", () => {
  const solc = require(solcDir);
  const output = JSON.parse(solc.compile(Buffer.concat(chunks).toString("utf8"), { import: findImports }));
  output.compilerVersion = solc.version();
  process.stdout.write(JSON.stringify(output));
});
