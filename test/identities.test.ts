import { FastCheck as fc } from "effect"
import { assert, describe, it } from "vitest"
import { Identities } from "../src/store/Identities.js"

// The JSONL sink's replay memory: what it says it has seen must be exactly what it was given (and not
// forgotten), in any order of arrival, or the raw log loses events (false "seen") or doubles them.
describe("Identities (the JSONL sink's memory of written events)", () => {
  const op = fc.oneof(
    { weight: 8, arbitrary: fc.record({ kind: fc.constant("add" as const), symbol: fc.constantFrom("BTCUSDT", "ETHUSDT", "SOLUSDT"), micros: fc.integer({ min: 0, max: 3_000 }).map((n) => 1.7e15 + n * 1000) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant("remove" as const), symbol: fc.constantFrom("BTCUSDT", "ETHUSDT", "SOLUSDT"), micros: fc.integer({ min: 0, max: 3_000 }).map((n) => 1.7e15 + n * 1000) }) }
  )

  it("answers as a set of (symbol, instant) does, in any order of adds and removes", () =>
    fc.assert(
      fc.property(fc.array(op, { maxLength: 2_000 }), (ops) => {
        const ids = new Identities(1_000_000)
        const reference = new Set<string>()
        for (const { kind, micros, symbol } of ops) {
          const key = `${symbol}|${micros}`
          if (kind === "add") assert.strictEqual(ids.add(symbol, micros), !reference.has(key))
          else ids.remove(symbol, micros)
          if (kind === "add") reference.add(key)
          else reference.delete(key)
          assert.strictEqual(ids.has(symbol, micros), reference.has(key))
        }
        assert.strictEqual(ids.size, reference.size)
        for (const key of reference) {
          const [symbol, micros] = key.split("|") as [string, string]
          assert.isTrue(ids.has(symbol, Number(micros)))
        }
      }),
      { numRuns: 200 }
    ))

  it("stays within its bound however many events come, keeping the most recent ones", () => {
    const ids = new Identities(10_000)
    const t0 = 1.7e15
    for (let i = 0; i < 200_000; i++) ids.add(`S${i % 7}`, t0 + i)
    assert.isAtMost(ids.size, 10_000)
    assert.isAtLeast(ids.size, 7_000)
    for (let i = 199_000; i < 200_000; i++) assert.isTrue(ids.has(`S${i % 7}`, t0 + i), "a recent identity was forgotten")
    assert.isFalse(ids.has("S0", t0))
  })
})
