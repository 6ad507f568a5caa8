import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { parse } from "yaml"
import { repoRoot } from "./support/process.js"

const composeFile = path.join(repoRoot, "docker-compose.yml")
const hasDockerCompose = spawnSync("docker-compose", ["version"], { stdio: "ignore" }).status === 0

describe("Docker deployment files", () => {
  it("docker-compose.yml runs Kafka 4.1 in KRaft mode and the three roles against it", () => {
    const compose = parse(fs.readFileSync(composeFile, "utf8"), { merge: true })
    const services = compose.services
    expect(Object.keys(services).sort()).toEqual(["api", "consumer", "kafka", "kafka-init", "producer"])
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
})
