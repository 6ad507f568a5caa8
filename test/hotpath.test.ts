import { HttpServer } from "@effect/platform"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Layer, ManagedRuntime } from "effect"
import * as fs from "node:fs"
import type { IncomingMessage, ServerResponse } from "node:http"
import * as os from "node:os"
import * as path from "node:path"
import { HOT_TTL_MS, HotResponses } from "../src/api/HotPath.js"
import { listeningServer } from "../src/api/NodeServer.js"
import { Health } from "../src/status/Health.js"
import { sqliteLayer } from "../src/store/Sql.js"
import { TickRepo } from "../src/store/TickRepo.js"
import { makeEvent, us } from "./support/events.js"

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "hot-"))
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

/** The server as the roles run it (hot path included) on a free loopback port, with `env` as configuration. */
const start = (name: string, env: Record<string, string> = {}) => {
  const runtime = ManagedRuntime.make(
    listeningServer({ port: 0, host: "127.0.0.1" }).pipe(
      Layer.provideMerge(Layer.merge(TickRepo.Default, Health.Default)),
      Layer.provideMerge(sqliteLayer(path.join(dir, `${name}.db`))),
      Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries({ SYMBOLS: "BTCUSDT", ...env })))))
    )
  )
  const base = runtime.runPromise(
    Effect.map(HttpServer.HttpServer, (s) => `http://127.0.0.1:${(s.address as HttpServer.TcpAddress).port}`)
  )
  return { runtime, base }
}

/** What the hot path alone would answer for `url`, by calling it directly. */
const hotAnswer = (hot: HotResponses, url: string) => {
  let status = 0
  let headers: Record<string, unknown> = {}
  let body = ""
  const served = hot.tryServe({ method: "GET", url } as IncomingMessage, {
    writeHead: (s: number, h: Record<string, unknown>) => {
      status = s
      headers = h
    },
    end: (b: Buffer) => {
      body = b.toString("utf8")
    }
  } as unknown as ServerResponse)
  return { served, status, headers, body }
}

describe("hot path for /trades/latest", () => {
  it("answers a repeated request from memory with the pipeline's bytes and headers, for at most a second", async () => {
    const { base, runtime } = start("open")
    try {
      await runtime.runPromise(
        Effect.flatMap(TickRepo, (r) => r.insertMany([makeEvent("BTCUSDT", us("2026-03-05T12:00:00Z"), "1.00")]))
      )
      const url = "/trades/latest?symbol=BTCUSDT&limit=5"
      const hot = await runtime.runPromise(HotResponses)
      expect(hotAnswer(hot, url).served).toBe(false)

      const first = await fetch(`${await base}${url}`)
      const text = await first.text()
      expect(first.status).toBe(200)
      const answer = hotAnswer(hot, url)
      expect(answer.served).toBe(true)
      expect(answer.body).toBe(text)
      for (const name of ["content-type", "x-content-type-options", "x-frame-options", "referrer-policy", "content-security-policy"]) {
        expect(answer.headers[name], name).toBe(first.headers.get(name))
      }
      // a second request over the socket gets the same bytes
      expect(await (await fetch(`${await base}${url}`)).text()).toBe(text)

      // new data shows once the remembered answer expired
      await runtime.runPromise(
        Effect.flatMap(TickRepo, (r) => r.insertMany([makeEvent("BTCUSDT", us("2026-03-05T12:01:00Z"), "2.00")]))
      )
      await new Promise((r) => setTimeout(r, HOT_TTL_MS + 50))
      expect(hotAnswer(hot, url).served).toBe(false)
      const fresh = JSON.parse(await (await fetch(`${await base}${url}`)).text())
      expect(fresh.map((e: { lastPrice: string }) => e.lastPrice)).toEqual(["2.00", "1.00"])
    } finally {
      await runtime.dispose()
    }
  })

  it("stays off when a setting needs a decision per request (API keys)", async () => {
    const key = "a-long-enough-test-key-123"
    const { base, runtime } = start("keyed", { API_KEYS: key })
    try {
      const url = "/trades/latest?symbol=BTCUSDT"
      const keyed = await fetch(`${await base}${url}`, { headers: { "x-api-key": key } })
      expect(keyed.status).toBe(200)
      const hot = await runtime.runPromise(HotResponses)
      expect(hot.enabled).toBe(false)
      expect(hotAnswer(hot, url).served).toBe(false)
      expect((await fetch(`${await base}${url}`)).status).toBe(401)
    } finally {
      await runtime.dispose()
    }
  })
})
