import { type ChildProcess, spawn } from "node:child_process"
import * as net from "node:net"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..")
export const mainJs = path.join(repoRoot, "dist", "main.js")

/** A free loopback port (listen on 0, close, reuse the number). */
export const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = net.createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })

export interface RunningMain {
  readonly child: ChildProcess
  /** Everything the process printed so far (stdout and stderr). */
  output(): string
  /** Resolves with the exit code (or signal name) once the process ended. */
  readonly exited: Promise<number | string>
}

/** Runs the built `dist/main.js` with `args` and exactly `env` on top of PATH/HOME. */
export const runMain = (args: ReadonlyArray<string>, env: Record<string, string>): RunningMain => {
  const child = spawn(process.execPath, [mainJs, ...args], {
    cwd: repoRoot,
    // The fake Binance serves its WebSocket side on its REST port; without one, a closed local port:
    // no test ever reaches Binance's real streams.
    env: {
      PATH: process.env.PATH ?? "",
      HOME: process.env.HOME ?? "",
      LOG_FORMAT: "json",
      BINANCE_WS_URL: env.BINANCE_BASE_URL?.replace(/^http/, "ws") ?? "ws://127.0.0.1:9",
      ...env
    },
    stdio: ["ignore", "pipe", "pipe"]
  })
  let out = ""
  child.stdout!.on("data", (d) => (out += d))
  child.stderr!.on("data", (d) => (out += d))
  const exited = new Promise<number | string>((resolve) =>
    child.once("exit", (code, signal) => resolve(code ?? signal ?? "unknown"))
  )
  return { child, output: () => out, exited }
}

/** Polls `check` every 50 ms until it returns a value, or throws after `timeoutMs`. */
export const waitFor = async <A>(check: () => Promise<A | undefined> | A | undefined, timeoutMs: number, what: string) => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await check()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** GET `url` as JSON, or undefined when nothing listens yet. */
export const getJson = async (url: string): Promise<{ status: number; body: any } | undefined> => {
  try {
    const res = await fetch(url)
    return { status: res.status, body: await res.json() }
  } catch {
    return undefined
  }
}

/**
 * `dist/main.js --role=all` polling `binanceUrl` every 0.5 s for BTCUSDT and ETHUSDT, with its database
 * and raw log under `dataDir`; `env` overrides any of it. Resolves once its API answers.
 */
export const startRoleAll = async (binanceUrl: string, dataDir: string, env: Record<string, string> = {}) => {
  const port = await freePort()
  const main = runMain(["--role=all"], {
    BINANCE_BASE_URL: binanceUrl,
    SYMBOLS: "BTCUSDT,ETHUSDT",
    POLL_INTERVAL_SECONDS: "0.5",
    PORT: String(port),
    HOST: "127.0.0.1",
    STORAGE_PATH: path.join(dataDir, "app.db"),
    RAW_DIR: path.join(dataDir, "raw"),
    ...env
  })
  const base = `http://127.0.0.1:${port}`
  try {
    await waitFor(async () => ((await getJson(`${base}/health/live`))?.status === 200 ? true : undefined), 20_000, "the API")
  } catch (e) {
    main.child.kill("SIGKILL")
    throw new Error(`${String(e)}; the process printed: ${main.output()}`)
  }
  return { main, base, port }
}
