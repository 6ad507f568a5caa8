#!/usr/bin/env node
// A real single-node Apache Kafka 4.1 broker (KRaft, no ZooKeeper, no Docker) run
// from Maven Central jars. Node built-ins only. Two uses:
//
//   import { startKafka } from "./scripts/kafka.mjs"
//   const kafka = await startKafka({ partitions: 3 })  // kafka.bootstrap, kafka.restart(), kafka.stop()
//
//   node scripts/kafka.mjs start [--port N] [--partitions N]  # detached; last stdout line: KAFKA_BOOTSTRAP_SERVERS=...
//   node scripts/kafka.mjs status | stop
//
// Needs Java 17+ on PATH, and Maven once (it downloads the jars into .kafka/lib).
import { spawn, spawnSync } from "node:child_process"
import { randomBytes } from "node:crypto"
import fs from "node:fs"
import net from "node:net"
import os from "node:os"
import path from "node:path"
import { fileURLToPath } from "node:url"

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
const POM = path.join(ROOT, "kafka", "pom.xml")
const LOG4J = path.join(ROOT, "kafka", "log4j2.properties")
const HOME = path.join(ROOT, ".kafka")
const LIB = path.join(HOME, "lib")
const STATE = path.join(HOME, "state.json")

const READY_TIMEOUT_MS = 90_000
const STOP_TIMEOUT_MS = 20_000
const BROKER_JVM = ["-Xms512m", "-Xmx512m", "-XX:+UseG1GC", "-Djava.awt.headless=true"]
const TOOL_JVM = ["-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"] // short-lived: start fast
const FALLBACK = "or set KAFKA_BOOTSTRAP_SERVERS to an existing broker."

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

class KafkaSetupError extends Error {}

function onPath(cmd) {
  return (process.env.PATH ?? "").split(path.delimiter).some((dir) => {
    try {
      fs.accessSync(path.join(dir, cmd), fs.constants.X_OK)
      return true
    } catch {
      return false
    }
  })
}

function requireJava() {
  const need = "Java 17+ is required to run the local Kafka broker: install openjdk-17-jre-headless (apt)"
  if (!onPath("java")) throw new KafkaSetupError(`${need} ${FALLBACK}`)
  const out = spawnSync("java", ["-version"], { encoding: "utf8" }).stderr ?? ""
  const m = /version "(\d+)(?:\.(\d+))?/.exec(out)
  const major = m ? (m[1] === "1" ? Number(m[2]) : Number(m[1])) : NaN
  if (major < 17) throw new KafkaSetupError(`${need} (found Java ${major}) ${FALLBACK}`)
}

const hasKafkaJar = (dir) => fs.existsSync(dir) && fs.readdirSync(dir).some((f) => /^kafka_2\.13-.+\.jar$/.test(f))

/** Downloads the broker jars into .kafka/lib once (Maven caches them in ~/.m2). */
async function ensureJars() {
  if (hasKafkaJar(LIB)) return
  if (!onPath("mvn")) {
    throw new KafkaSetupError(`Apache Maven is required once to download the Kafka jars: install maven (apt) ${FALLBACK}`)
  }
  process.stderr.write("kafka: downloading broker jars with Maven (first run only)...\n")
  // Download to a private dir and rename, so concurrent callers never see a half-filled lib/.
  const tmp = `${LIB}.tmp-${process.pid}-${randomBytes(3).toString("hex")}`
  const args = ["-q", "-B", "-f", POM, "dependency:copy-dependencies", `-DoutputDirectory=${tmp}`, "-DincludeScope=runtime"]
  const code = await new Promise((resolve) => {
    spawn("mvn", args, { stdio: ["ignore", 2, 2] }).on("exit", resolve).on("error", () => resolve(-1))
  })
  if (code !== 0 || !hasKafkaJar(tmp)) {
    fs.rmSync(tmp, { recursive: true, force: true })
    throw new KafkaSetupError(`mvn dependency:copy-dependencies failed (exit ${code}); see the Maven output above.`)
  }
  try {
    fs.renameSync(tmp, LIB)
  } catch {
    fs.rmSync(tmp, { recursive: true, force: true }) // another process won the race
    if (!hasKafkaJar(LIB)) throw new KafkaSetupError(`could not install the Kafka jars into ${LIB}`)
  }
}

function freePort(port = 0) {
  return new Promise((resolve, reject) => {
    const srv = net.createServer().unref()
    srv.once("error", reject)
    srv.listen(port, "127.0.0.1", () => {
      const { port: p } = srv.address()
      srv.close(() => resolve(p))
    })
  })
}

function serverProperties({ port, controllerPort, dataDir, partitions }) {
  return [
    "process.roles=broker,controller",
    "node.id=1",
    `controller.quorum.voters=1@127.0.0.1:${controllerPort}`,
    `listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controllerPort}`,
    `advertised.listeners=PLAINTEXT://127.0.0.1:${port}`,
    "inter.broker.listener.name=PLAINTEXT",
    "controller.listener.names=CONTROLLER",
    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
    `log.dirs=${dataDir}`,
    `num.partitions=${partitions}`,
    "offsets.topic.replication.factor=1",
    "offsets.topic.num.partitions=1",
    "transaction.state.log.replication.factor=1",
    "transaction.state.log.min.isr=1",
    "transaction.state.log.num.partitions=1",
    "share.coordinator.state.topic.replication.factor=1",
    "share.coordinator.state.topic.min.isr=1",
    "group.initial.rebalance.delay.ms=0",
    "auto.create.topics.enable=false",
    "num.network.threads=2",
    "num.io.threads=4",
    "",
  ].join("\n")
}

function javaArgs(jvm, mainClass, ...args) {
  return [...jvm, "-cp", path.join(LIB, "*"), `-Dlog4j2.configurationFile=${LOG4J}`, mainClass, ...args]
}

/** Last lines of the broker log, without Java stack frames. */
function tail(file, lines = 25) {
  try {
    const text = fs.readFileSync(file, "utf8").trimEnd().split("\n")
    return text.filter((l) => !/^\s+(at |\.\.\. \d+ more)/.test(l)).slice(-lines).join("\n")
  } catch {
    return "(no broker log)"
  }
}

function format(dir) {
  // Base64url cluster id (22 chars); one starting with "-" would be read as an option.
  let clusterId
  do clusterId = randomBytes(16).toString("base64url")
  while (clusterId.startsWith("-"))
  const r = spawnSync("java", javaArgs(TOOL_JVM, "kafka.tools.StorageTool", "format", "-t", clusterId, "-c", "server.properties"), {
    cwd: dir,
    encoding: "utf8",
  })
  if (r.status !== 0) throw new Error(`kafka storage format failed:\n${r.stdout}${r.stderr}`)
}

/**
 * Resolves with the number of live brokers in a Metadata (v6) response, or rejects.
 * Only a broker that has started and unfenced itself lists itself here.
 */
function probeMetadata(port, timeoutMs = 2_000) {
  return new Promise((resolve, reject) => {
    const clientId = Buffer.from("kafka.mjs")
    const req = Buffer.alloc(4 + 2 + 2 + 4 + 2 + clientId.length + 4 + 1)
    let o = req.writeInt32BE(req.length - 4, 0)
    o = req.writeInt16BE(3, o) // api key: Metadata
    o = req.writeInt16BE(6, o) // api version
    o = req.writeInt32BE(1, o) // correlation id
    o = req.writeInt16BE(clientId.length, o)
    o += clientId.copy(req, o)
    o = req.writeInt32BE(-1, o) // topics: null = all
    req.writeInt8(0, o) // allow_auto_topic_creation
    const sock = net.connect({ host: "127.0.0.1", port })
    let buf = Buffer.alloc(0)
    const fail = (err) => {
      sock.destroy()
      reject(err)
    }
    sock.setTimeout(timeoutMs, () => fail(new Error("metadata request timed out")))
    sock.once("error", fail)
    sock.once("close", () => reject(new Error("connection closed")))
    sock.once("connect", () => sock.write(req))
    sock.on("data", (chunk) => {
      buf = Buffer.concat([buf, chunk])
      // size, correlation id, throttle_time_ms, brokers array length
      if (buf.length < 16) return
      sock.destroy()
      if (buf.readInt32BE(4) !== 1) return reject(new Error("unexpected correlation id"))
      resolve(buf.readInt32BE(12))
    })
  })
}

function alive(pid) {
  try {
    process.kill(pid, 0)
  } catch {
    return false
  }
  try {
    // A reparented broker that nobody reaps lingers as a zombie: count it as gone.
    return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, "utf8"))
  } catch {
    return true
  }
}

async function waitReady({ port, pid, logFile, timeoutMs = READY_TIMEOUT_MS }) {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (!alive(pid)) throw new Error(`Kafka broker exited during startup. Broker log (${logFile}):\n${tail(logFile)}`)
    try {
      if ((await probeMetadata(port)) > 0) return
    } catch {
      // not listening or not serving requests yet
    }
    await sleep(250)
  }
  throw new Error(`Kafka broker not ready after ${timeoutMs / 1000}s. Broker log (${logFile}):\n${tail(logFile)}`)
}

/** SIGTERM (controlled shutdown), SIGKILL after STOP_TIMEOUT_MS; resolves once the process is gone. */
async function stopPid(pid) {
  if (!alive(pid)) return
  process.kill(pid, "SIGTERM")
  const deadline = Date.now() + STOP_TIMEOUT_MS
  while (alive(pid) && Date.now() < deadline) await sleep(100)
  if (alive(pid)) {
    process.kill(pid, "SIGKILL")
    while (alive(pid)) await sleep(50)
  }
}

// Brokers started by this process in library mode (pid -> boot info): killed, and their
// temp dirs removed, if the process exits without stop().
const owned = new Map()
process.on("exit", () => {
  for (const [pid, b] of owned) {
    try {
      process.kill(pid, "SIGKILL")
    } catch {
      // already gone
    }
    if (b.removeDir) fs.rmSync(b.dir, { recursive: true, force: true })
  }
})

function launch({ dir, logFile, detached }) {
  const out = fs.openSync(logFile, "a")
  const child = spawn("java", javaArgs(BROKER_JVM, "kafka.Kafka", "server.properties"), {
    cwd: dir,
    stdio: ["ignore", out, out],
    detached,
  })
  fs.closeSync(out)
  child.on("error", () => {})
  if (!child.pid) throw new Error("could not start java")
  child.unref()
  return child
}

async function boot({ port, partitions, dir, detached }) {
  requireJava()
  await ensureJars()
  if (port) await freePort(port).catch(() => Promise.reject(new KafkaSetupError(`port ${port} is already in use`)))
  const controllerPort = await freePort()
  port ??= await freePort()
  const ownDir = !dir
  dir = dir ? path.resolve(dir) : fs.mkdtempSync(path.join(os.tmpdir(), "kafka-"))
  const dataDir = path.join(dir, "data")
  const logFile = path.join(dir, "broker.log")
  fs.mkdirSync(dataDir, { recursive: true })
  fs.writeFileSync(path.join(dir, "server.properties"), serverProperties({ port, controllerPort, dataDir, partitions }))
  if (!fs.existsSync(path.join(dataDir, "meta.properties"))) format(dir)
  return { port, controllerPort, dir, ownDir, dataDir, logFile, detached }
}

async function run(b) {
  const child = launch(b)
  const pid = child.pid
  if (!b.detached) owned.set(pid, b)
  try {
    await waitReady({ port: b.port, pid, logFile: b.logFile })
  } catch (err) {
    await stopPid(pid).catch(() => {})
    owned.delete(pid)
    throw err
  }
  return pid
}

/**
 * Starts a fresh single-node KRaft broker on 127.0.0.1 and resolves once it serves metadata.
 * @param {{ partitions?: number, dir?: string, port?: number, keep?: boolean }} [opts]
 *   partitions: num.partitions (default 3); dir: working dir (default: a new temp dir, removed
 *   by stop() unless keep); port: PLAINTEXT port (default: a free one).
 */
export async function startKafka(opts = {}) {
  const b = await boot({ port: opts.port, partitions: opts.partitions ?? 3, dir: opts.dir, detached: false })
  b.removeDir = b.ownDir && !opts.keep
  let pid = await run(b)
  let stopped = false

  const halt = async () => {
    await stopPid(pid)
    owned.delete(pid)
  }
  return {
    bootstrap: `127.0.0.1:${b.port}`,
    port: b.port,
    controllerPort: b.controllerPort,
    logDir: b.dataDir,
    logFile: b.logFile,
    dir: b.dir,
    get pid() {
      return pid
    },
    /** Stops the broker; removes its temp dir unless a dir was given or keep is set. */
    async stop() {
      if (stopped) return
      stopped = true
      await halt()
      if (b.removeDir) fs.rmSync(b.dir, { recursive: true, force: true })
    },
    /** Stops and starts the same broker: same ports, same data, no re-format. */
    async restart() {
      if (stopped) throw new Error("restart() after stop()")
      await halt()
      pid = await run(b)
    },
  }
}

// ---------------------------------------------------------------- CLI

function readState() {
  try {
    return JSON.parse(fs.readFileSync(STATE, "utf8"))
  } catch {
    return undefined
  }
}

const isBroker = (pid) => {
  if (!alive(pid)) return false
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("kafka.Kafka")
  } catch {
    return true
  }
}

function flag(args, name) {
  const i = args.indexOf(name)
  if (i < 0) return undefined
  const n = Number(args[i + 1])
  if (!Number.isInteger(n) || n <= 0) throw new KafkaSetupError(`${name} needs a positive integer`)
  return n
}

async function cli([cmd, ...args]) {
  const state = readState()
  const live = state && isBroker(state.pid)
  const print = (s) => console.log(`KAFKA_BOOTSTRAP_SERVERS=${s.bootstrap}`)

  switch (cmd) {
    case "start": {
      if (live) {
        await waitReady({ port: state.port, pid: state.pid, logFile: state.logFile })
        return print(state)
      }
      const wanted = flag(args, "--port")
      const port = wanted ?? (await freePort(9092).catch(() => freePort()))
      const b = await boot({ port, partitions: flag(args, "--partitions") ?? 3, detached: true })
      const pid = await run(b)
      const next = {
        pid,
        bootstrap: `127.0.0.1:${b.port}`,
        port: b.port,
        controllerPort: b.controllerPort,
        dir: b.dir,
        logDir: b.dataDir,
        logFile: b.logFile,
      }
      fs.mkdirSync(HOME, { recursive: true })
      fs.writeFileSync(STATE, `${JSON.stringify(next, null, 2)}\n`)
      console.error(`kafka: broker pid ${pid}, log ${b.logFile}`)
      return print(next)
    }
    case "stop": {
      if (live) await stopPid(state.pid)
      if (state?.dir?.startsWith(os.tmpdir())) fs.rmSync(state.dir, { recursive: true, force: true })
      fs.rmSync(STATE, { force: true })
      return console.log(live ? `kafka: stopped broker pid ${state.pid}` : "kafka: not running")
    }
    case "status": {
      if (!live) {
        console.log("kafka: not running")
        process.exitCode = 1
        return
      }
      console.log(`kafka: running, pid ${state.pid}, log ${state.logFile}`)
      return print(state)
    }
    default:
      console.error("usage: node scripts/kafka.mjs start [--port N] [--partitions N] | stop | status")
      process.exitCode = 2
  }
}

const isMain = process.argv[1] && fs.realpathSync(process.argv[1]) === fs.realpathSync(fileURLToPath(import.meta.url))
if (isMain) {
  cli(process.argv.slice(2)).catch((err) => {
    console.error(err instanceof KafkaSetupError ? err.message : `kafka: ${err.message}`)
    process.exit(1)
  })
}
