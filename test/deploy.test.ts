import { spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { parse } from "yaml"
import { freePort, getJson, mainJs, repoRoot, waitFor } from "./support/process.js"

const composeFile = path.join(repoRoot, "docker-compose.yml")
const dockerfileText = () => fs.readFileSync(path.join(repoRoot, "docker/Dockerfile"), "utf8")
/** The Dockerfile's stages: each FROM line and the lines up to the next one. */
const stages = (dockerfile: string) =>
  dockerfile
    .split(/^(?=FROM )/m)
    .filter((part) => part.startsWith("FROM "))
    .map((text) => ({ from: text.split("\n")[0]!, text }))
const hasDockerCompose = spawnSync("docker-compose", ["version"], { stdio: "ignore" }).status === 0

describe("Docker deployment files", () => {
  it("docker-compose.yml runs Kafka 4.1 in KRaft mode and the three roles against it", () => {
    const compose = parse(fs.readFileSync(composeFile, "utf8"), { merge: true })
    const services = compose.services
    expect(Object.keys(services).sort()).toEqual(["api", "consumer", "kafka", "kafka-init", "postgres", "producer"])
    expect(services.kafka.image).toMatch(/^apache\/kafka:4\.1\.\d+$/)
    expect(services.kafka.environment.KAFKA_PROCESS_ROLES).toBe("broker,controller")
    expect(JSON.stringify(services.kafka)).not.toMatch(/zookeeper/i)
    expect(services["kafka-init"].command.join(" ")).toContain("crypto_prices.dlq")
    for (const role of ["producer", "consumer", "api"]) {
      expect(services[role].command).toEqual([`--role=${role}`])
      expect(services[role].environment.BROKER_MODE).toBe("kafka")
      expect(services[role].environment.KAFKA_BOOTSTRAP_SERVERS).toBe("kafka:19092")
      expect(services[role].build.dockerfile).toBe("docker/Dockerfile")
      expect(services[role].depends_on["kafka-init"].condition).toBe("service_completed_successfully")
    }
    // consumer writes and api reads the same SQLite file
    expect(services.consumer.volumes).toEqual(services.api.volumes)
  })

  it("PostgreSQL is an opt-in profile the roles use when STORE=postgres", () => {
    const compose = parse(fs.readFileSync(composeFile, "utf8"), { merge: true })
    const { postgres } = compose.services
    expect(postgres.image).toMatch(/^postgres:1[67]$/)
    // a plain `docker compose up` (SQLite) neither starts nor needs it
    expect(postgres.profiles).toEqual(["postgres"])
    expect(postgres.healthcheck.test.join(" ")).toMatch(/pg_isready -U crypto -d crypto/)
    expect(postgres.volumes).toEqual(["postgres-data:/var/lib/postgresql/data"])
    expect(Object.keys(compose.volumes)).toContain("postgres-data")
    for (const role of ["producer", "consumer", "api"]) {
      const env = compose.services[role].environment
      expect(env.STORE).toBe("${STORE:-sqlite}")
      expect(env.DATABASE_URL).toBe("${DATABASE_URL:-postgres://crypto:crypto@postgres:5432/crypto}")
      // depending on a profile's service would pull it into every `up`; the roles wait for the server
      expect(Object.keys(compose.services[role].depends_on)).not.toContain("postgres")
    }
  })

  it.runIf(hasDockerCompose || process.env.CI === "true")("docker-compose resolves STORE: sqlite by default, postgres when asked", () => {
    const config = (env: Record<string, string>, ...args: Array<string>) => {
      const { STORE: _store, DATABASE_URL: _url, COMPOSE_PROFILES: _profiles, ...rest } = process.env
      const result = spawnSync("docker-compose", ["-f", composeFile, ...args, "config"], { encoding: "utf8", env: { ...rest, ...env } })
      expect(result.status, result.stderr).toBe(0)
      return parse(result.stdout).services
    }
    expect(config({}).api.environment.STORE).toBe("sqlite")
    const services = config({ STORE: "postgres" }, "--profile", "postgres")
    expect(services.consumer.environment.STORE).toBe("postgres")
    expect(services.consumer.environment.DATABASE_URL).toBe("postgres://crypto:crypto@postgres:5432/crypto")
    expect(services.postgres.image).toMatch(/^postgres:/)
  })

  it("render.yaml's commented PostgreSQL variant is a blueprint: a database, two api instances and the ingest", () => {
    const text = fs.readFileSync(path.join(repoRoot, "render.yaml"), "utf8")
    const start = text.indexOf("# --- BEGIN PostgreSQL variant")
    const end = text.indexOf("# --- END PostgreSQL variant")
    expect(start).toBeGreaterThan(0)
    const variant = parse(
      text
        .slice(text.indexOf("\n", start) + 1, end)
        .split("\n")
        .filter((line) => line.startsWith("#") && !line.startsWith("##"))
        .map((line) => line.replace(/^# ?/, ""))
        .join("\n")
    )
    const [db] = variant.databases
    expect(db.plan).toMatch(/^basic-/)
    const byName = Object.fromEntries(variant.services.map((s: { name: string }) => [s.name, s]))
    const api = byName["crypto-api"]
    expect(api.type).toBe("web")
    expect(api.numInstances).toBe(2)
    expect(api.dockerCommand).toBe("node dist/main.js --role=api")
    expect(api.healthCheckPath).toBe("/health/live")
    const ingest = byName["crypto-ingest"]
    expect(ingest.type).toBe("worker")
    expect(ingest.numInstances ?? 1).toBe(1)
    expect(api.disk).toBeUndefined()
    for (const service of [api, ingest]) {
      expect(service.region).toBe(db.region)
      const env = Object.fromEntries(service.envVars.map((v: { key: string }) => [v.key, v]))
      expect(env.STORE.value).toBe("postgres")
      expect(env.DATABASE_URL.fromDatabase).toEqual({ name: db.name, property: "connectionString" })
    }
    // the active blueprint stays the single process on SQLite
    expect(parse(text).databases).toBeUndefined()
  })

  it.runIf(hasDockerCompose || process.env.CI === "true")("docker-compose config accepts the compose file", () => {
    const result = spawnSync("docker-compose", ["-f", composeFile, "config", "-q"], { encoding: "utf8" })
    expect(result.error, "docker-compose is not installed: apt-get install docker-compose").toBeUndefined()
    expect(result.stderr).toBe("")
    expect(result.status).toBe(0)
  })

  it("render.yaml deploys the single-process mode from the Dockerfile with a persistent disk", () => {
    const blueprint = parse(fs.readFileSync(path.join(repoRoot, "render.yaml"), "utf8"))
    const [web] = blueprint.services
    expect(web.type).toBe("web")
    expect(web.runtime).toBe("docker")
    expect(fs.existsSync(path.join(repoRoot, web.dockerfilePath))).toBe(true)
    expect(web.disk.mountPath).toBe("/data")
    expect(web.numInstances).toBe(1)
    expect(["frankfurt", "singapore"]).toContain(web.region)
    const env = Object.fromEntries(web.envVars.map((v: { key: string; value?: string }) => [v.key, v.value]))
    expect(env.BROKER_MODE).toBe("direct")
    expect(env.STORAGE_PATH.startsWith(web.disk.mountPath)).toBe(true)
    expect(env.RAW_DIR.startsWith(web.disk.mountPath)).toBe(true)
    expect(web.healthCheckPath).toBe("/health/live")
  })

  it("the Dockerfile is multi-stage, runs as non-root and checks liveness (/health/live)", () => {
    const dockerfile = fs.readFileSync(path.join(repoRoot, "docker/Dockerfile"), "utf8")
    expect(dockerfile.match(/^FROM /gm)!.length).toBeGreaterThanOrEqual(2)
    expect(dockerfile).toMatch(/^USER node$/m)
    // /health is 503 during a Binance outage or ban: an orchestrator restarting on it would loop
    const healthcheck = dockerfile.match(/^HEALTHCHECK (?:.*\\\n)*.*$/m)?.[0] ?? ""
    expect(dockerfile.match(/^HEALTHCHECK /gm)?.length).toBe(1)
    const probed = [...healthcheck.matchAll(/\/health[\w/-]*/g)].map((m) => m[0])
    expect(probed).toEqual(["/health/live"])
    expect(dockerfile).toMatch(/^ENTRYPOINT \["node", "dist\/main.js"\]$/m)
    // everything the image copies exists in the repository
    for (const [, src] of dockerfile.matchAll(/^COPY (?!--from)([^\n]+) \.\/?\S*$/gm)) {
      for (const file of src!.split(" ")) expect(fs.existsSync(path.join(repoRoot, file)), file).toBe(true)
    }
  })

  it("both stages run Node 24 LTS, the SQLite driver supports Node 20, 22 and 24, and package.json allows >= 20", () => {
    const all = stages(dockerfileText())
    expect(all.length).toBeGreaterThanOrEqual(2)
    for (const stage of all) expect(stage.from).toMatch(/^FROM node:24-bookworm-slim AS \w+$/)
    const manifest = JSON.parse(fs.readFileSync(path.join(repoRoot, "package.json"), "utf8"))
    expect(manifest.engines.node).toBe(">=20")
    // the driver is compiled for the image's Node in the build stage; its engines must include it
    const driver = JSON.parse(fs.readFileSync(path.join(repoRoot, "node_modules", "better-sqlite3", "package.json"), "utf8"))
    for (const major of ["20", "22", "24"]) expect(driver.engines.node, `better-sqlite3 ${driver.version} on Node ${major}`).toContain(`${major}.x`)
  })

  it("the image ships the bundle: built by scripts/build.mjs, copied with only its run-time packages", () => {
    const manifest = JSON.parse(fs.readFileSync(path.join(repoRoot, "package.json"), "utf8"))
    expect(manifest.scripts.build).toBe("node scripts/build.mjs")
    const [build, runtime] = [stages(dockerfileText())[0]!, stages(dockerfileText()).at(-1)!]
    expect(build.text).toMatch(/^RUN npm ci\b/m)
    expect(build.text).toMatch(/npm run build/)
    expect(build.text).toMatch(/node scripts\/build\.mjs --runtime-modules \/runtime/)
    expect(runtime.text).toMatch(/^COPY --from=build (--chown=\S+ )?\/app\/dist \.\/dist$/m)
    expect(runtime.text).toMatch(/^COPY --from=build (--chown=\S+ )?\/runtime\/node_modules \.\/node_modules$/m)
    // no sources, no full node_modules in the runtime stage
    expect(runtime.text).not.toMatch(/^COPY .*\bsrc\b/m)
    expect(runtime.text).not.toMatch(/^COPY --from=build (--chown=\S+ )?\/app\/node_modules/m)
  })

  it("the bundle starts, serves /health/live and exits 0 on SIGTERM with only the packages the image copies", async () => {
    if (!fs.existsSync(mainJs)) throw new Error("dist/main.js is missing: run `npm run build` (npm test does it first)")
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "deploy-bundle-"))
    try {
      // the runtime stage's /app: package.json, dist/ and the run-time packages, nothing else
      fs.mkdirSync(path.join(dir, "app", "dist"), { recursive: true })
      fs.copyFileSync(path.join(repoRoot, "package.json"), path.join(dir, "app", "package.json"))
      fs.copyFileSync(mainJs, path.join(dir, "app", "dist", "main.js"))
      const copy = spawnSync(process.execPath, [path.join(repoRoot, "scripts", "build.mjs"), "--runtime-modules", path.join(dir, "app")], {
        encoding: "utf8"
      })
      expect(copy.status, copy.stderr).toBe(0)
      const packages = fs.readdirSync(path.join(dir, "app", "node_modules"))
      expect(packages).toContain("better-sqlite3")
      expect(packages).not.toContain("effect")
      expect(packages).not.toContain("kafkajs")
      const port = await freePort()
      const closed = await freePort()
      const child = spawn(process.execPath, ["dist/main.js", "--role=all"], {
        cwd: path.join(dir, "app"),
        env: {
          PATH: process.env.PATH ?? "",
          HOME: process.env.HOME ?? "",
          BINANCE_BASE_URL: `http://127.0.0.1:${closed}`,
          HOST: "127.0.0.1",
          PORT: String(port),
          STORAGE_PATH: path.join(dir, "data", "app.db"),
          RAW_DIR: path.join(dir, "data", "raw"),
          LOG_FORMAT: "json"
        },
        stdio: ["ignore", "pipe", "pipe"]
      })
      let output = ""
      child.stdout.on("data", (d) => (output += d))
      child.stderr.on("data", (d) => (output += d))
      const exited = new Promise<number | string>((resolve) => child.once("exit", (code, signal) => resolve(code ?? signal ?? "?")))
      try {
        await waitFor(async () => ((await getJson(`http://127.0.0.1:${port}/health/live`))?.status === 200 ? true : undefined), 20_000, "/health/live")
      } catch (e) {
        child.kill("SIGKILL")
        throw new Error(`${String(e)}; it printed: ${output}`)
      }
      child.kill("SIGTERM")
      expect(await exited, output).toBe(0)
      expect(fs.existsSync(path.join(dir, "data", "app.db"))).toBe(true)
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})
