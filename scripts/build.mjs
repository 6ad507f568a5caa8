#!/usr/bin/env node
// The production build: src/main.ts bundled by esbuild into one ESM file, dist/main.js, with its
// source map dist/main.js.map and the licences of what it bundles, dist/THIRD-PARTY-LICENSES.txt.
// The dashboard's browser code (src/web/page: its script, with lightweight-charts, and its stylesheet)
// is bundled first (`buildPage`, for browsers, minified) and its text embedded into dist/main.js in
// place of src/web/assets.ts, so the server serves it without reading a file.
// `npm run build`, `npm start`, the benches, the tests and the Docker image all run this file. It does
// not type-check (`npm run lint` does, with tsc --noEmit): a type error elsewhere in the tree never
// blocks a build.
//
//   node scripts/build.mjs                           # dist/main.js, dist/main.js.map, licences
//   node scripts/build.mjs --analyze                 # the same, then the bundle's size by package
//   node scripts/build.mjs --outfile /tmp/x/main.js  # elsewhere (dist/ untouched)
//   node scripts/build.mjs --runtime-modules DIR     # no build: DIR/node_modules gets the packages the
//                                                    # bundle loads at run time (the Docker image's)
//
// External (left to node_modules at run time; everything else is inlined):
//   - better-sqlite3: a native addon (build/Release/better_sqlite3.node, found by `bindings`), so it
//     must be compiled for the Node version that runs it. Its `bindings` and `file-uri-to-path` come
//     along through --runtime-modules.
//   - bufferutil, utf-8-validate: optional native helpers of ws, require()d inside try/catch. Not
//     installed; ws uses its JavaScript fallbacks.
//   - pg-native: the optional libpq binding of `pg`, required only when `pg.native` is read, which
//     @effect/sql-pg never does. Not installed.
// Everything else (effect, @effect/*, kafkajs, undici, ws, yaml, ...) is plain JavaScript and bundled.
// Three modules of kafkajs are replaced in the bundle: its record encoder and decoder, by
// src/broker/kafka/recordEncoder.ts and recordDecoder.ts (the same bytes and records for a fraction of
// the work per record; test/kafkajsRecord.test.ts compares them), and its grouping of a send's messages
// by partition, by src/broker/kafka/groupMessages.ts (linear instead of quadratic; test/kafkaPartitioner.test.ts).
// The build fails when a kafkajs module is not the one its replacement was written against (sha256).
// CommonJS modules in the bundle call `require` for Node built-ins, so the bundle starts with a
// `require` made by createRequire. After the build, the metafile is checked: any import left outside
// the bundle must be a Node built-in or one of EXTERNAL, no code may use __dirname or __filename
// unguarded, and none but the banner import.meta (a file looked up next to its module would be looked
// up next to dist/main.js). Nothing does today; a new dependency that does fails here, not at run time.
//
// The source map maps the product's own code (src/) only: node_modules frames keep their dist/main.js
// position (the bundle is not minified: names and `// node_modules/<pkg>/...` region comments stay
// readable). That makes the map ~0.25 MB instead of 3.5 MB (16 MB with sources), and
// `node --enable-source-maps dist/main.js` (or NODE_OPTIONS=--enable-source-maps) then adds ~50-200 ms
// to a start instead of ~300 ms, the map being decoded at the first stack formatted. Still a cost, so
// source maps stay off by default: bench/cold-start.ts measures it in its source-maps row.
import fs from "node:fs"
import { isBuiltin } from "node:module"
import path from "node:path"
import { performance } from "node:perf_hooks"
import { fileURLToPath } from "node:url"

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
const DEFAULT_DIST = path.join(ROOT, "dist")
/** What dist/ may hold besides the build's own files: the bench drivers compiled by bench/tsconfig.json. */
const KEEP_IN_DIST = new Set(["bench"])
const LICENSES = "THIRD-PARTY-LICENSES.txt"
/** Base64 digits of source map VLQs. */
const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
const B64_VALUE = new Map([...B64].map((c, i) => [c, i]))

/** Packages the bundle leaves to node_modules (see above). */
export const EXTERNAL = ["better-sqlite3", "bufferutil", "utf-8-validate", "pg-native"]
/** Dependencies used only by an install script (better-sqlite3's prebuilt-binary download): not run-time. */
const INSTALL_ONLY = new Set(["prebuild-install"])

const BANNER = [
  "// crypto-streaming-platform: bundled by scripts/build.mjs (esbuild) from src/; map: main.js.map",
  'import { createRequire as __cspCreateRequire } from "node:module";',
  "const require = __cspCreateRequire(import.meta.url);"
].join("\n")

const argValue = (name) => {
  const at = process.argv.indexOf(name)
  return at > 0 && process.argv[at + 1] !== undefined ? path.resolve(process.argv[at + 1]) : undefined
}

/** The dashboard's browser code (src/web/page), bundled by `buildPage` and embedded into the server bundle. */
const PAGE_ENTRY = "src/web/page/main.ts"
const PAGE_CSS = "src/web/page/dashboard.css"
/** The module of src/ whose exports the build replaces by the built page (run from source, it builds the page itself). */
const PAGE_ASSETS_MODULE = path.join(ROOT, "src", "web", "assets.ts")
/**
 * Modules of kafkajs the bundle takes from src/ instead (see build): kafkajs' file, the sha256 of the
 * kafkajs 2.2.4 file the replacement was written against, the replacement, and the module text put in
 * kafkajs' place (given its own dependencies, required as kafkajs' file requires them).
 */
const KAFKAJS_REPLACEMENTS = [
  {
    file: "protocol/recordBatch/record/v0/index.js",
    sha256: "ffbc628c1f35f5de8ba798165616b1009d9af1c27ca959999a10e6e3c18f8215",
    module: path.join(ROOT, "src", "broker", "kafka", "recordEncoder.ts"),
    contents: (module) => `const Encoder = require('../../../encoder')\nmodule.exports = require(${JSON.stringify(module)}).makeRecordEncoder(Encoder)\n`
  },
  {
    file: "protocol/recordBatch/record/v0/decoder.js",
    sha256: "86d740054c8be29b02873bf2871eb43ba5004af94324610541dbab2d9fabcc65",
    module: path.join(ROOT, "src", "broker", "kafka", "recordDecoder.ts"),
    contents: (module) =>
      "const Long = require('../../../../utils/long')\nconst TimestampTypes = require('../../../timestampTypes')\n" +
      `module.exports = require(${JSON.stringify(module)}).makeRecordDecoder(Long, TimestampTypes.LOG_APPEND_TIME)\n`
  },
  {
    file: "producer/groupMessagesPerPartition.js",
    sha256: "ea72357721fbf67770b5e06b9bf4260faa1e60f3affb556bff2cc7892c1881fb",
    module: path.join(ROOT, "src", "broker", "kafka", "groupMessages.ts"),
    contents: (module) => `module.exports = require(${JSON.stringify(module)}).groupMessagesPerPartition\n`
  }
]
/** A kafkajs module's path under kafkajs/src (wherever node_modules is: a symlink resolves elsewhere). */
const kafkajsFile = (args) => args.path.split(path.sep).join("/").replace(/^.*\/kafkajs\/src\//, "")
const KAFKAJS_FILTER = /[\\/]kafkajs[\\/]src[\\/](protocol[\\/]recordBatch[\\/]record[\\/]v0[\\/](index|decoder)|producer[\\/]groupMessagesPerPartition)\.js$/

// Imported (src/web/assets.ts does, run from source, for `buildPage`), this file builds nothing.
const runAsScript = (() => {
  try {
    return process.argv[1] !== undefined && fs.realpathSync(process.argv[1]) === fs.realpathSync(fileURLToPath(import.meta.url))
  } catch {
    return false
  }
})()
if (runAsScript) {
  const runtimeDir = argValue("--runtime-modules")
  if (runtimeDir !== undefined) copyRuntimeModules(runtimeDir)
  else await build(argValue("--outfile") ?? path.join(DEFAULT_DIST, "main.js"))
}

/**
 * The dashboard page's script and stylesheet (src/web/page), bundled and minified for browsers, with
 * the CSP hashes of the inline styles its libraries inject (lightweight-charts adds one <style> for
 * its TradingView attribution logo) and the input files (for the licences). The texts are embedded
 * into dist/main.js (the server reads no file at run time).
 */
export async function buildPage() {
  const esbuild = await import("esbuild")
  const common = {
    absWorkingDir: ROOT,
    bundle: true,
    minify: true,
    target: ["chrome100", "firefox100", "safari15"],
    charset: "ascii",
    // lightweight-charts' licence header stays with its code in the browser
    legalComments: "eof",
    metafile: true,
    write: false,
    logLevel: "warning"
  }
  const [script, style] = await Promise.all([
    esbuild.build({ ...common, entryPoints: [PAGE_ENTRY], outfile: "page/dashboard.js", platform: "browser", format: "iife" }),
    esbuild.build({ ...common, entryPoints: [PAGE_CSS], outfile: "page/dashboard.css" })
  ])
  const js = script.outputFiles.find((f) => f.path.endsWith(".js"))?.text
  const css = style.outputFiles.find((f) => f.path.endsWith(".css"))?.text
  if (js === undefined || css === undefined) throw new Error("esbuild produced no dashboard script or stylesheet")
  // The attribution logo's <style> text, as lightweight-charts injects it: allowed by its hash.
  const logo = /(["'`])(a#tv-attr-logo\{(?:(?!\1)[^\\])*)\1/.exec(js)
  if (logo === null) {
    throw new Error(
      "buildPage: lightweight-charts' attribution logo style (a#tv-attr-logo{...}) is not in the page bundle as one plain string: " +
        "update the dashboard CSP (src/web/Dashboard.ts) for the new version"
    )
  }
  const { createHash } = await import("node:crypto")
  const styleHashes = [`sha256-${createHash("sha256").update(logo[2], "utf8").digest("base64")}`]
  const inputs = [...Object.keys(script.metafile.inputs), ...Object.keys(style.metafile.inputs)]
  return { js, css, styleHashes, inputs }
}

async function build(OUT) {
  const DIST = path.dirname(OUT)
  // esbuild is a devDependency: imported here so that --runtime-modules works after `npm prune`
  const esbuild = await import("esbuild")
  const started = performance.now()
  // The dashboard first: the server bundle embeds it as text, in place of src/web/assets.ts.
  const page = await buildPage()
  let pageEmbedded = false
  const pagePlugin = {
    name: "dashboard-page",
    setup(b) {
      b.onLoad({ filter: /[\\/]src[\\/]web[\\/]assets\.ts$/ }, (args) => {
        if (path.resolve(args.path) !== PAGE_ASSETS_MODULE) return undefined
        const assets = { js: page.js, css: page.css, styleHashes: page.styleHashes }
        pageEmbedded = true
        return {
          contents: `// the dashboard page, built by scripts/build.mjs (buildPage)\nexport const loadPageAssets = () => Promise.resolve(${JSON.stringify(assets)})\n`,
          loader: "js"
        }
      })
    }
  }
  // kafkajs' modules in KAFKAJS_REPLACEMENTS, replaced by the product's: the same bytes and records for
  // a fraction of the work. Only the modules they were written against are replaced.
  const replaced = new Set()
  const kafkajsPlugin = {
    name: "kafkajs-replacements",
    setup(b) {
      b.onLoad({ filter: KAFKAJS_FILTER }, async (args) => {
        const replacement = KAFKAJS_REPLACEMENTS.find((r) => kafkajsFile(args) === r.file)
        if (replacement === undefined) return undefined
        const { createHash } = await import("node:crypto")
        const digest = createHash("sha256").update(await fs.promises.readFile(args.path)).digest("hex")
        const module = path.relative(ROOT, replacement.module)
        if (digest !== replacement.sha256) {
          return {
            errors: [
              {
                text:
                  `${path.relative(ROOT, args.path)} is not the kafkajs 2.2.4 module that ${module} replaces (sha256 differs): ` +
                  "compare the two, check test/kafkajsRecord.test.ts against the new version, then update its sha256 in scripts/build.mjs"
              }
            ]
          }
        }
        replaced.add(replacement.file)
        return {
          contents: `// kafkajs' ${replacement.file}, replaced by scripts/build.mjs with ${module}\n${replacement.contents(replacement.module)}`,
          loader: "js",
          resolveDir: path.dirname(args.path)
        }
      })
    }
  }
  const result = await esbuild.build({
    absWorkingDir: ROOT,
    entryPoints: ["src/main.ts"],
    outfile: OUT,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    external: EXTERNAL,
    sourcemap: "linked",
    sourcesContent: false,
    // the licence texts go to THIRD-PARTY-LICENSES.txt, whole
    legalComments: "none",
    // Strings and identifiers in ASCII (other characters escaped); comments are made ASCII below.
    charset: "ascii",
    banner: { js: BANNER },
    metafile: true,
    write: false,
    logLevel: "warning",
    plugins: [pagePlugin, kafkajsPlugin]
  })

  // --- checks on what stays outside the bundle ---------------------------------------------------
  const problems = []
  for (const [file, output] of Object.entries(result.metafile.outputs)) {
    for (const imp of output.imports) {
      if (!imp.external) continue
      const ok = imp.path.startsWith("node:") || isBuiltin(imp.path) || EXTERNAL.includes(imp.path)
      if (!ok) problems.push(`${file}: ${imp.kind} of "${imp.path}" is left outside the bundle and is not in EXTERNAL`)
    }
  }
  const js = result.outputFiles.find((f) => f.path === OUT)
  const map = result.outputFiles.find((f) => f.path === `${OUT}.map`)
  if (js === undefined || map === undefined) throw new Error(`esbuild produced no ${OUT} or no map`)
  const bannerLines = BANNER.split("\n").length
  // V8 keeps a script's source for lazy compilation, one byte per character when all of it is Latin-1
  // and two otherwise: a few curly quotes in the packages' comments cost 6 MB of RSS. charset "ascii"
  // escapes them in code; what is left is in comments, where each UTF-16 unit becomes "?" (the same
  // length, so the source map's columns still hold).
  let code = js.text
  code.split("\n").forEach((text, i) => {
    const at = text.search(/[\u0080-\uffff]/)
    if (at !== -1 && !/^\s*(\/\/|\*|\/\*)/.test(text) && !text.slice(0, at).includes("//")) {
      problems.push(`${path.basename(OUT)}:${i + 1}: a non-ASCII character outside a comment: ${text.trim().slice(0, 120)}`)
    }
  })
  code = code.replace(/[\u0080-\uffff]/g, "?")
  code.split("\n").forEach((text, i) => {
    // `typeof __filename !== "undefined" ? __filename : ...` (undici) copes without one
    for (const [name] of text.matchAll(/\b__(?:dirname|filename)\b/g)) {
      if (!text.includes(`typeof ${name}`)) {
        problems.push(`${path.basename(OUT)}:${i + 1}: ${name} is used and an ESM bundle has none (add a shim to BANNER)`)
      }
    }
    // a file found relative to its module (new URL("./x", import.meta.url)) would be looked for next
    // to dist/main.js: such a file must be inlined or copied by this script. A package resolved by
    // name (createRequire(import.meta.url).resolve("pkg")) is found from dist/main.js as the banner's
    // require finds it, so that one form may stay.
    const packageByName = /createRequire\(import\.meta\.url\)\.resolve\("[a-z@][^"./][^"]*"\)/g
    if (i >= bannerLines && /\bimport\.meta\b/.test(text.replace(packageByName, "")) && !/^\s*(\/\/|\*)/.test(text)) {
      problems.push(`${path.basename(OUT)}:${i + 1}: import.meta is used outside the banner: ${text.trim().slice(0, 120)}`)
    }
  })
  for (const r of KAFKAJS_REPLACEMENTS) {
    if (!replaced.has(r.file)) problems.push(`kafkajs' src/${r.file} was not replaced by ${path.relative(ROOT, r.module)}`)
  }
  // the page is served from the text embedded in place of src/web/assets.ts
  if (!pageEmbedded) problems.push(`${path.relative(ROOT, PAGE_ASSETS_MODULE)} was not replaced by the built page: the dashboard would not be served`)
  if (problems.length > 0) {
    console.error(`build: ${problems.length} problem(s):\n  ${problems.join("\n  ")}`)
    process.exit(1)
  }

  const srcOnlyMap = JSON.stringify(keepSources(JSON.parse(map.text), (source) => !source.includes("node_modules/")))
  const inputs = Object.keys(result.metafile.outputs[path.relative(ROOT, OUT)].inputs)
  const licenses = licenseText([...inputs, ...page.inputs])

  // --- write: dist/ holds the build's files (stale ones removed) and bench/ ----------------------
  fs.mkdirSync(DIST, { recursive: true })
  const own = new Set([path.basename(OUT), `${path.basename(OUT)}.map`, LICENSES])
  if (DIST === DEFAULT_DIST) {
    // e.g. the per-file output of the former tsc build
    for (const entry of fs.readdirSync(DIST)) {
      // (*.tmp: another build writing at the same time)
      if (!KEEP_IN_DIST.has(entry) && !own.has(entry) && !entry.endsWith(".tmp")) {
        fs.rmSync(path.join(DIST, entry), { recursive: true, force: true })
      }
    }
  }
  // Atomic replacements: a test or a bench may start `node dist/main.js` while this runs.
  const writeAtomic = (file, contents) => {
    const temp = `${file}.${process.pid}.tmp`
    fs.writeFileSync(temp, contents)
    fs.renameSync(temp, file)
  }
  writeAtomic(path.join(DIST, LICENSES), licenses)
  writeAtomic(`${OUT}.map`, srcOnlyMap)
  writeAtomic(OUT, code)

  const mb = (n) => `${(n / 1024 / 1024).toFixed(2)} MB`
  console.log(
    `build: ${path.relative(ROOT, OUT)} ${mb(code.length)} (map ${mb(Buffer.byteLength(srcOnlyMap))}), ` +
      `external: ${EXTERNAL.join(", ")}; ${Math.round(performance.now() - started)} ms`
  )

  if (process.argv.includes("--analyze")) {
    const bytes = new Map()
    for (const [input, { bytesInOutput }] of Object.entries(result.metafile.outputs[path.relative(ROOT, OUT)].inputs)) {
      const owner = packageOf(input) ?? "src"
      bytes.set(owner, (bytes.get(owner) ?? 0) + bytesInOutput)
    }
    for (const [owner, n] of [...bytes].sort((a, b) => b[1] - a[1])) console.log(`  ${(n / 1024).toFixed(0).padStart(6)} KiB  ${owner}`)
  }
}

/** The package an input path of the metafile belongs to (e.g. "@effect/platform"), or undefined for src/. */
function packageOf(input) {
  const at = input.lastIndexOf("node_modules/")
  if (at < 0) return undefined
  const parts = input.slice(at + "node_modules/".length).split("/")
  return parts[0].startsWith("@") ? `${parts[0]}/${parts[1]}` : parts[0]
}

/** Name, version and licence file of every package the bundle holds code from. */
function licenseText(inputs) {
  const dirs = new Map()
  for (const input of inputs) {
    const name = packageOf(input)
    if (name === undefined) continue
    const at = input.lastIndexOf("node_modules/")
    dirs.set(path.join(ROOT, input.slice(0, at + "node_modules/".length), name), name)
  }
  const sections = [...dirs]
    .sort((a, b) => a[1].localeCompare(b[1]))
    .map(([dir, name]) => {
      const manifest = JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8"))
      const file = fs.readdirSync(dir).find((f) => /^(licen[cs]e|copying)(\.|$)/i.test(f))
      const text = file !== undefined ? fs.readFileSync(path.join(dir, file), "utf8").trim() : `License: ${manifest.license ?? "see the package"}`
      return `${name}@${manifest.version}\n${"-".repeat(72)}\n${text}\n`
    })
  return `Third-party software bundled into dist/main.js (scripts/build.mjs)\n\n${sections.join("\n")}`
}

/**
 * Copies into `dir`/node_modules the packages the bundle loads at run time: EXTERNAL (those installed)
 * and their dependencies, without INSTALL_ONLY ones, and for native packages (binding.gyp) without their
 * C sources and build intermediates (only the compiled *.node files of build/).
 */
function copyRuntimeModules(dir) {
  const target = path.join(dir, "node_modules")
  fs.rmSync(target, { recursive: true, force: true })
  const copied = new Map()
  /** Node's resolution of package `name` from directory `from`: the nearest node_modules/<name> above it. */
  const resolve = (name, from) => {
    for (let at = from; ; at = path.dirname(at)) {
      const candidate = path.join(at, "node_modules", name)
      if (fs.existsSync(path.join(candidate, "package.json"))) return candidate
      if (at === ROOT || path.dirname(at) === at) return undefined
    }
  }
  const visit = (name, from, optional) => {
    if (INSTALL_ONLY.has(name)) return
    const source = resolve(name, from)
    if (source === undefined) {
      if (optional) return
      throw new Error(`${name} (needed at run time) is not installed under ${from}`)
    }
    const relative = path.relative(path.join(ROOT, "node_modules"), source)
    if (copied.has(relative)) return
    const manifest = JSON.parse(fs.readFileSync(path.join(source, "package.json"), "utf8"))
    const native = fs.existsSync(path.join(source, "binding.gyp"))
    fs.cpSync(source, path.join(target, relative), {
      recursive: true,
      filter: (file) => {
        const rel = path.relative(source, file)
        if (rel.startsWith(`node_modules${path.sep}`) || rel === "node_modules") return false // visited on its own
        if (!native) return true
        const top = rel.split(path.sep)[0]
        if (top === "deps" || top === "src") return false
        if (top === "build") return fs.statSync(file).isDirectory() ? !/obj|\.deps/.test(rel) : file.endsWith(".node")
        return true
      }
    })
    copied.set(relative, manifest.version)
    for (const dep of Object.keys(manifest.dependencies ?? {})) visit(dep, source, false)
    for (const dep of Object.keys(manifest.optionalDependencies ?? {})) visit(dep, source, true)
  }
  // bufferutil and utf-8-validate are optional: ws runs without them
  for (const name of EXTERNAL) visit(name, ROOT, name !== "better-sqlite3")
  const list = [...copied].map(([name, version]) => `${name}@${version}`).join(", ")
  console.log(`runtime modules: ${path.relative(process.cwd(), target) || target}: ${list}`)
}

// --- source map helpers -------------------------------------------------------------------------------

/**
 * The source map `sourceMap` with only the segments whose source passes `keep`: the others are dropped,
 * or become "unmapped" 1-field segments where they follow a kept segment (on any line before), so that
 * a position in node_modules code is never attributed to the src/ segment before it.
 */
function keepSources(sourceMap, keep) {
  const sourceIndex = new Map()
  const sources = []
  const nameIndex = new Map()
  const names = []
  const lines = decodeMappings(sourceMap.mappings)
  // Consumers (Node's findEntry among them) map a position to the last segment before it, across lines
  let lastKept = false
  const out = lines.map((segments) => {
    const kept = []
    for (const seg of segments) {
      if (seg.length >= 4 && keep(sourceMap.sources[seg[1]])) {
        const s = sourceMap.sources[seg[1]]
        if (!sourceIndex.has(s)) {
          sourceIndex.set(s, sources.length)
          sources.push(s)
        }
        const next = [seg[0], sourceIndex.get(s), seg[2], seg[3]]
        if (seg.length === 5) {
          const n = sourceMap.names[seg[4]]
          if (!nameIndex.has(n)) {
            nameIndex.set(n, names.length)
            names.push(n)
          }
          next.push(nameIndex.get(n))
        }
        kept.push(next)
        lastKept = true
      } else if (lastKept) {
        kept.push([seg[0]])
        lastKept = false
      }
    }
    return kept
  })
  return { version: 3, sources, names, mappings: encodeMappings(out) }
}

/** Mappings as absolute [column, source, line, column, name?] segments per generated line. */
function decodeMappings(mappings) {
  const state = [0, 0, 0, 0]
  return mappings.split(";").map((line) => {
    let column = 0
    if (line === "") return []
    return line.split(",").map((text) => {
      const fields = []
      let value = 0
      let shift = 0
      for (const c of text) {
        const digit = B64_VALUE.get(c)
        value += (digit & 31) << shift
        if (digit & 32) {
          shift += 5
        } else {
          fields.push(value & 1 ? -(value >>> 1) : value >>> 1)
          value = 0
          shift = 0
        }
      }
      column += fields[0]
      const seg = [column]
      for (let i = 1; i < fields.length; i++) {
        state[i - 1] += fields[i]
        seg.push(state[i - 1])
      }
      return seg
    })
  })
}

function encodeMappings(lines) {
  const state = [0, 0, 0, 0]
  const vlq = (n) => {
    let v = n < 0 ? (-n << 1) | 1 : n << 1
    let s = ""
    do {
      let digit = v & 31
      v >>>= 5
      if (v > 0) digit |= 32
      s += B64[digit]
    } while (v > 0)
    return s
  }
  return lines
    .map((segments) => {
      let column = 0
      return segments
        .map((seg) => {
          let s = vlq(seg[0] - column)
          column = seg[0]
          for (let i = 1; i < seg.length; i++) {
            s += vlq(seg[i] - state[i - 1])
            state[i - 1] = seg[i]
          }
          return s
        })
        .join(",")
    })
    .join(";")
}
