import { HttpServerRequest } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Effect, TestClock } from "effect"
import { clientAddress, makeRateLimiter, MAX_TRACKED_CLIENTS } from "../src/api/security/rateLimit.js"

/** The i-th of many distinct IPv4 addresses. */
const ipv4 = (i: number) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`

describe("rate limiter memory", () => {
  it.effect("100 000 distinct client addresses never grow it past its bound", () =>
    Effect.gen(function* () {
      const limiter = yield* makeRateLimiter({ perMinute: 60, burst: 5 })
      let most = 0
      for (let i = 0; i < 100_000; i++) {
        yield* limiter.take(`address:${ipv4(i)}`)
        if (i % 1000 === 999) most = Math.max(most, yield* limiter.tracked)
      }
      assert.strictEqual(most, MAX_TRACKED_CLIENTS)
      assert.strictEqual(yield* limiter.tracked, MAX_TRACKED_CLIENTS)
      // once they have all been idle long enough to be full again, they are all gone
      yield* TestClock.adjust("5 seconds")
      yield* limiter.take("address:192.0.2.1")
      assert.strictEqual(yield* limiter.tracked, 1)
    })
  )

  it.effect("forgets the least recently seen first: a client still active keeps its spent bucket", () =>
    Effect.gen(function* () {
      const limiter = yield* makeRateLimiter({ perMinute: 1, burst: 2 }, 100)
      const abuser = "address:203.0.113.1"
      yield* limiter.take(abuser)
      yield* limiter.take(abuser)
      for (let i = 0; i < 1_000; i++) {
        yield* limiter.take(`address:${ipv4(i)}`)
        if (i % 50 === 0) assert.isFalse((yield* limiter.take(abuser)).allowed)
      }
      assert.strictEqual(yield* limiter.tracked, 100)
    })
  )

  it.effect("an IPv6 /64 is one client however many of its addresses appear", () =>
    Effect.gen(function* () {
      const limiter = yield* makeRateLimiter({ perMinute: 60, burst: 3 })
      const from = (address: string) =>
        HttpServerRequest.fromWeb(new Request("http://localhost/symbols", { headers: { "x-forwarded-for": address } })).modify({
          remoteAddress: "10.0.0.2"
        })
      const decisions = []
      for (let i = 0; i < 1_000; i++) {
        decisions.push(yield* limiter.take(`address:${clientAddress(from(`2001:db8:1:2:${i.toString(16)}::1`), 1)}`))
      }
      assert.strictEqual(yield* limiter.tracked, 1)
      assert.strictEqual(decisions.filter((d) => d.allowed).length, 3)
    })
  )
})
