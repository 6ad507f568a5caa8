import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { freePort } from "./process.js"

/**
 * A PostgreSQL server of the test's own (initdb in a temp directory, its own port), so a test can
 * stop and restart it without disturbing the shared server the other test files use. Uses the
 * machine's PostgreSQL binaries (Debian: /usr/lib/postgresql/<version>/bin); as root it runs them as
 * the `postgres` user, which PostgreSQL requires.
 */
export interface PgCluster {
  readonly port: number
  /** postgres://postgres@127.0.0.1:<port>/<database> */
  readonly url: (database: string) => string
  readonly stop: () => void
  readonly start: () => void
  /** Stops the server and removes its directory. */
  readonly destroy: () => void
}

const binDir = (): string => {
  const root = "/usr/lib/postgresql"
  const versions = fs.existsSync(root) ? fs.readdirSync(root).sort((a, b) => Number(b) - Number(a)) : []
  const found = versions.map((v) => path.join(root, v, "bin")).find((d) => fs.existsSync(path.join(d, "pg_ctl")))
  if (found === undefined) throw new Error("PostgreSQL's server binaries (initdb, pg_ctl) are missing: apt-get install postgresql")
  return found
}

export const startPgCluster = async (): Promise<PgCluster> => {
  const bin = binDir()
  const port = await freePort()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cs-pgcluster-"))
  const data = path.join(dir, "data")
  const asRoot = process.getuid?.() === 0
  if (asRoot) execFileSync("chown", ["-R", "postgres:postgres", dir])
  fs.chmodSync(dir, 0o755)
  const run = (tool: string, args: ReadonlyArray<string>) => {
    const [cmd, argv] = asRoot ? ["runuser", ["-u", "postgres", "--", path.join(bin, tool), ...args]] : [path.join(bin, tool), [...args]]
    execFileSync(cmd as string, argv as Array<string>, { stdio: "pipe", cwd: dir })
  }
  run("initdb", ["-D", data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"])
  const start = () =>
    run("pg_ctl", [
      "-D", data, "-l", path.join(dir, "server.log"), "-w", "-t", "30",
      "-o", `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200`,
      "start"
    ])
  const stop = () => run("pg_ctl", ["-D", data, "-w", "-t", "30", "-m", "fast", "stop"])
  start()
  return {
    port,
    url: (database) => `postgres://postgres@127.0.0.1:${port}/${database}`,
    stop,
    start,
    destroy: () => {
      try {
        stop()
      } catch {
        // already stopped
      }
      fs.rmSync(dir, { recursive: true, force: true })
    }
  }
}
