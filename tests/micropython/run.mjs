// Run a script under the real MicroPython interpreter (the WebAssembly port, npm package
// @micropython/micropython-webassembly-pyscript) with the node firmware importable.
//
//   node tests/micropython/run.mjs [--fw DIR] [--heap BYTES] SCRIPT.py [ARG...]
//
// Every *.py and *.mpy file of DIR (default: firmware_py/) is written to /fw in the
// interpreter's virtual file system, and every *.py file beside this runner (MicroPython-side
// test helpers) to /helpers; both are put on sys.path. sys.argv is [SCRIPT, ARG...].
// The script's print() goes to stdout. It can read its standard input line by line through
// the JS module `host`: `import host; line = host.readline()` (None at end of input).
// Exit status: 0, or 1 with the Python traceback on stderr when the script raised
// (sys.exit(n) exits with n).

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..", "..");

function usage(message) {
  process.stderr.write(`run.mjs: ${message}\n`);
  process.stderr.write("usage: node tests/micropython/run.mjs [--fw DIR] [--heap BYTES] SCRIPT.py [ARG...]\n");
  process.exit(2);
}

let fwDir = path.join(root, "firmware_py");
let heapsize = 1024 * 1024;
const argv = process.argv.slice(2);
while (argv.length && argv[0].startsWith("--")) {
  const opt = argv.shift();
  if (opt === "--fw") fwDir = argv.shift() ?? usage("--fw needs a directory");
  else if (opt === "--heap") heapsize = Number(argv.shift() ?? usage("--heap needs a size"));
  else usage(`unknown option ${opt}`);
}
if (!argv.length) usage("no script given");
const [script, ...args] = argv;

let loadMicroPython;
try {
  ({ loadMicroPython } = await import("@micropython/micropython-webassembly-pyscript"));
} catch (e) {
  process.stderr.write(
    "run.mjs: @micropython/micropython-webassembly-pyscript is not installed (npm ci in the repo root)\n",
  );
  process.exit(3);
}

// Synchronous writes: output must not be lost when the process exits right after.
const writeOut = (text) => fs.writeSync(1, text);
const mp = await loadMicroPython({
  heapsize,
  stdout: (line) => writeOut(line + "\n"),
  stderr: (line) => fs.writeSync(2, line + "\n"),
});

function copyInto(dir, target, extensions) {
  mp.FS.mkdirTree(target);
  for (const name of fs.readdirSync(dir).sort()) {
    if (extensions.some((ext) => name.endsWith(ext))) {
      mp.FS.writeFile(`${target}/${name}`, fs.readFileSync(path.join(dir, name)));
    }
  }
}
copyInto(fwDir, "/fw", [".py", ".mpy"]);
copyInto(here, "/helpers", [".py"]);

let pending = Buffer.alloc(0);
let atEof = false;
const block = Buffer.alloc(65536);
function readline() {
  for (;;) {
    const nl = pending.indexOf(10);
    if (nl >= 0) {
      const line = pending.subarray(0, nl).toString("utf8");
      pending = pending.subarray(nl + 1);
      return line;
    }
    if (atEof) {
      if (!pending.length) return null;
      const line = pending.toString("utf8");
      pending = Buffer.alloc(0);
      return line;
    }
    let n;
    try {
      n = fs.readSync(0, block, 0, block.length, null);
    } catch (e) {
      if (e.code === "EAGAIN") continue;
      if (e.code !== "EOF") throw e;
      n = 0;
    }
    if (n === 0) atEof = true;
    else pending = Buffer.concat([pending, block.subarray(0, n)]);
  }
}
mp.registerJsModule("host", { readline, write: (text) => writeOut(String(text)) });

const source = fs.readFileSync(script, "utf8");
try {
  mp.runPython(
    "import sys\n" +
      "sys.path[:0] = ['/fw', '/helpers']\n" +
      "sys.argv[:] = " + JSON.stringify([script, ...args]) + "\n",
  );
  mp.runPython(source);
} catch (e) {
  const text = String(e && e.message !== undefined ? e.message : e);
  const exit = /SystemExit: (\d+)\s*$/.exec(text);
  if (exit) process.exit(Number(exit[1]));
  if (/SystemExit\s*$/.test(text)) process.exit(0);
  process.stderr.write(`${text}\n`);
  process.exit(1);
}
process.exit(0);
