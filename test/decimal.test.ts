import { describe, expect, it } from "vitest"
import {
  addDecimal,
  compareDecimal,
  isDecimal,
  maxDecimal,
  minDecimal,
  normalizeDecimal,
  sumDecimals
} from "../src/domain/Decimal.js"

describe("addDecimal", () => {
  it("carries across the point and keeps the larger scale", () => {
    expect(addDecimal("0.9", "0.1")).toBe("1.0")
    expect(addDecimal("99.99", "0.01")).toBe("100.00")
    expect(addDecimal("1.5", "2.25")).toBe("3.75")
    expect(addDecimal("0.10000000", "0.2")).toBe("0.30000000")
    expect(addDecimal("7", "3")).toBe("10")
  })

  it("handles negatives and never yields -0", () => {
    expect(addDecimal("-1.5", "0.25")).toBe("-1.25")
    expect(addDecimal("-0.3", "0.1")).toBe("-0.2")
    expect(addDecimal("0.1", "-0.1")).toBe("0.0")
    expect(addDecimal("-0.05", "-0.05")).toBe("-0.10")
    expect(addDecimal("-0", "0")).toBe("0")
  })

  it("stays exact beyond 2^53", () => {
    // 2^53 = 9007199254740992: a float would print 9007199254740992 for 2^53 + 1
    expect(addDecimal("9007199254740992", "1")).toBe("9007199254740993")
    expect(addDecimal("99999999999999999999.99999999", "0.00000001")).toBe("100000000000000000000.00000000")
    expect(addDecimal("123456789012345678901234567890.123456789", "-0.000000001")).toBe(
      "123456789012345678901234567890.123456788"
    )
  })

  it("does not suffer float rounding", () => {
    expect(addDecimal("0.1", "0.2")).toBe("0.3")
  })
})

describe("sumDecimals", () => {
  it("sums a list exactly, '0' for none", () => {
    expect(sumDecimals([])).toBe("0")
    expect(sumDecimals(["1.50000000", "2.25000000", "0.10000001"])).toBe("3.85000001")
    expect(sumDecimals(["1", "-1", "0.000"])).toBe("0.000")
    expect(sumDecimals(Array.from({ length: 10 }, () => "0.1"))).toBe("1.0")
  })
})

describe("compareDecimal, maxDecimal, minDecimal", () => {
  it("compares across scales and signs", () => {
    expect(compareDecimal("1.10", "1.1")).toBe(0)
    expect(compareDecimal("-2", "-10")).toBe(1)
    expect(compareDecimal("-0.001", "0")).toBe(-1)
    expect(compareDecimal("0.00", "-0")).toBe(0)
    expect(compareDecimal("9007199254740993", "9007199254740992")).toBe(1)
    expect(compareDecimal("68001.2", "68001.20000001")).toBe(-1)
  })

  it("picks extremes as spelled; ties keep the first", () => {
    expect(maxDecimal("1.5", "10", "9.99")).toBe("10")
    expect(minDecimal("1.5", "-10", "9.99")).toBe("-10")
    expect(maxDecimal("2.0", "2")).toBe("2.0")
    expect(minDecimal("2", "2.000")).toBe("2")
    expect(maxDecimal("3")).toBe("3")
  })
})

describe("normalizeDecimal", () => {
  it("strips trailing zeros, a trailing point, leading zeros and -0", () => {
    expect(normalizeDecimal("68001.20000000")).toBe("68001.2")
    expect(normalizeDecimal("5.000")).toBe("5")
    expect(normalizeDecimal("0.00")).toBe("0")
    expect(normalizeDecimal("-0")).toBe("0")
    expect(normalizeDecimal("-0.000")).toBe("0")
    expect(normalizeDecimal("100")).toBe("100")
    expect(normalizeDecimal("007.50")).toBe("7.5")
    expect(normalizeDecimal("-0.0100")).toBe("-0.01")
  })
})

describe("validation", () => {
  const bad = ["1e5", "", " 1", "1 ", "+1", "1.", ".5", "NaN", "1,5", "--1", "0x10"]

  it.each(bad)("rejects %j with a RangeError naming it", (input) => {
    expect(isDecimal(input)).toBe(false)
    for (const call of [
      () => addDecimal(input, "1"),
      () => addDecimal("1", input),
      () => compareDecimal(input, "1"),
      () => normalizeDecimal(input),
      () => sumDecimals(["1", input]),
      () => maxDecimal(input),
      () => minDecimal("1", input)
    ]) {
      expect(call).toThrow(RangeError)
      expect(call).toThrow(JSON.stringify(input))
    }
  })
})
