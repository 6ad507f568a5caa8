import { describe, expect, it } from "vitest"
import type { Candle } from "../src/domain/Candles.js"
import { dailyFeatures, formatFeatureNumber } from "../src/domain/Features.js"

const DAY = 86_400_000
const JAN1 = Date.UTC(2024, 0, 1)

const daily = (dayIndex: number, close: string, closed = true, symbol = "BTCUSDT"): Candle => ({
  symbol,
  interval: "1d",
  openTime: JAN1 + dayIndex * DAY,
  open: close,
  high: close,
  low: close,
  close,
  volume: "1",
  quoteVolume: close,
  trades: 1,
  closed
})

// Written independently of the code under test: plain sample standard deviation × √365.
const annualisedSampleStdev = (xs: ReadonlyArray<number>): number => {
  const mean = xs.reduce((a, b) => a + b) / xs.length
  return Math.sqrt(xs.reduce((a, x) => a + (x - mean) * (x - mean), 0) / (xs.length - 1)) * Math.sqrt(365)
}

describe("dailyFeatures", () => {
  // Closes for 2024-01-01 .. 2024-01-10; the last day is still open.
  const closes = ["100", "110", "99", "105", "102", "108", "111", "107", "115", "112"]
  const candles = closes.map((c, i) => daily(i, c, i < closes.length - 1))
  // Log returns by hand (to 16 places, from 40-digit arithmetic):
  //   01-02 ln(110/100) =  0.0953101798043249    01-07 ln(111/108) =  0.0273989741881144
  //   01-03 ln( 99/110) = -0.1053605156578263    01-08 ln(107/111) = -0.0367013668504280
  //   01-04 ln(105/ 99) =  0.0588405000229334    01-09 ln(115/107) =  0.0721032939013439
  //   01-05 ln(102/105) = -0.0289875368732523    01-10 ln(112/115) = -0.0264332570681555
  //   01-06 ln(108/102) =  0.0571584138399486
  const returns = [
    null,
    0.0953101798043249, -0.1053605156578263, 0.0588405000229334, -0.0289875368732523, 0.0571584138399486,
    0.0273989741881144, -0.036701366850428, 0.0721032939013439, -0.0264332570681555
  ]
  // volatility_7d on 01-08 (returns 01-02..01-08): mean = 0.0676586484...÷7 = 0.0096655212,
  //   Σ(r − mean)² ÷ 6 = 0.0048663621 (sample variance), √0.0048663621 × √365 = 1.3327498527356893
  // 01-09 (returns 01-03..01-09): mean 0.0063502518, variance 0.0042807839 → 1.2499944515993358
  // 01-10 (returns 01-04..01-10): mean 0.0176255745, variance 0.0022317060 → 0.9025368105507226
  const vol7 = [null, null, null, null, null, null, null, 1.3327498527356893, 1.2499944515993358, 0.9025368105507226]

  it("computes log returns and 7-day volatility against hand-computed values", () => {
    const features = dailyFeatures(candles)
    expect(features.map((f) => f.date)).toEqual(closes.map((_, i) => `2024-01-${String(i + 1).padStart(2, "0")}`))
    expect(features.map((f) => f.close)).toEqual(closes)
    expect(features.every((f) => f.symbol === "BTCUSDT")).toBe(true)
    features.forEach((f, i) => {
      const r = returns[i]!
      if (r === null) expect(f.log_return).toBeNull()
      else expect(f.log_return).toBeCloseTo(r, 14)
      const v = vol7[i]!
      if (v === null) expect(f.volatility_7d).toBeNull()
      else expect(f.volatility_7d).toBeCloseTo(v, 12)
      expect(f.volatility_30d).toBeNull()
    })
    // The same, through the straightforward formula on the listed returns.
    expect(features[9]!.volatility_7d).toBeCloseTo(annualisedSampleStdev(returns.slice(3, 10) as Array<number>), 12)
  })

  it("includes the still-open day, whose close is the latest price", () => {
    const features = dailyFeatures(candles)
    expect(features).toHaveLength(10)
    expect(features[9]!.close).toBe("112")
  })

  it("sorts by date and keeps the last copy of a repeated day, whatever the input order", () => {
    const stale = daily(4, "1")
    const shuffled = [candles[7]!, stale, ...candles.slice(0, 7).reverse(), candles[9]!, candles[8]!]
    expect(dailyFeatures(shuffled)).toEqual(dailyFeatures(candles))
  })

  it("breaks the return at a missing calendar day and restarts the volatility window", () => {
    // 01-04 is missing: 01-05's return is null (its predecessor in the data is 01-03), and volatility_7d
    // waits for 7 consecutive returns again: 01-06 .. 01-12.
    // Closes 01-05 .. 01-12: 102, 108, 111, 107, 115, 112, 118, 120. Returns 01-06 .. 01-12:
    //   ln(108/102) = 0.0571584138399486, ln(111/108) = 0.0273989741881144, ln(107/111) = -0.0367013668504280,
    //   ln(115/107) = 0.0721032939013439, ln(112/115) = -0.0264332570681555, ln(118/112) = 0.0521857531705702,
    //   ln(120/118) = 0.0168071183163812
    //   mean = 0.1625189294977754 / 7 = 0.0232169899282536, sample variance = 0.0017491686948974,
    //   volatility_7d on 01-12 = √0.0017491686948974 × √365 = 0.7990285186634766
    const withGap = [...candles.filter((_, i) => i !== 3), daily(10, "118"), daily(11, "120")]
    const features = dailyFeatures(withGap)
    expect(features.map((f) => f.date)).toEqual([
      "2024-01-01", "2024-01-02", "2024-01-03", "2024-01-05", "2024-01-06", "2024-01-07",
      "2024-01-08", "2024-01-09", "2024-01-10", "2024-01-11", "2024-01-12"
    ])
    expect(features[1]!.log_return).toBeCloseTo(0.0953101798043249, 14)
    expect(features[3]!.log_return).toBeNull()
    expect(features[4]!.log_return).toBeCloseTo(0.0571584138399486, 14)
    expect(features.slice(0, 10).map((f) => f.volatility_7d)).toEqual(Array(10).fill(null))
    expect(features[10]!.volatility_7d).toBeCloseTo(0.7990285186634766, 12)
  })

  it("computes 30-day volatility once 30 consecutive returns exist", () => {
    // Closes 100 + ((37·i) mod 23) − 11 for i = 0..39: 89, 103, 94, 108, 99, 90, 104, ...
    const closes40 = Array.from({ length: 40 }, (_, i) => String(100 + ((i * 37) % 23) - 11))
    const features = dailyFeatures(closes40.map((c, i) => daily(i, c)))
    const rs = closes40.slice(1).map((c, i) => Math.log(Number(c) / Number(closes40[i])))
    expect(features.slice(0, 30).every((f) => f.volatility_30d === null)).toBe(true)
    // Hand (40-digit) values: day 31 (returns 1..30) 2.2042514353392995; day 40 (returns 10..39) 2.1965152305924733.
    expect(features[30]!.volatility_30d).toBeCloseTo(2.2042514353392995, 12)
    expect(features[39]!.volatility_30d).toBeCloseTo(2.1965152305924733, 12)
    expect(features[39]!.volatility_7d).toBeCloseTo(2.3594403304234561, 12)
    for (let t = 30; t < 40; t++) {
      expect(features[t]!.volatility_30d).toBeCloseTo(annualisedSampleStdev(rs.slice(t - 30, t)), 12)
    }
  })

  it("gives a null return for a non-positive close", () => {
    const features = dailyFeatures([daily(0, "0"), daily(1, "5"), daily(2, "6")])
    expect(features.map((f) => f.log_return)).toEqual([null, null, Math.log(6 / 5)])
  })

  it("returns nothing for nothing and refuses other intervals or several symbols", () => {
    expect(dailyFeatures([])).toEqual([])
    expect(() => dailyFeatures([{ ...daily(0, "1"), interval: "1h" }])).toThrow(RangeError)
    expect(() => dailyFeatures([daily(0, "1"), daily(1, "2", true, "ETHUSDT")])).toThrow(/one symbol/)
  })
})

describe("formatFeatureNumber", () => {
  it("writes a fixed, stable text", () => {
    expect(formatFeatureNumber(null)).toBe("")
    expect(formatFeatureNumber(0)).toBe("0")
    expect(formatFeatureNumber(-0)).toBe("0")
    expect(formatFeatureNumber(0.1)).toBe("0.1")
    expect(formatFeatureNumber(1 / 3)).toBe("0.3333333333")
    expect(formatFeatureNumber(-2 / 3)).toBe("-0.6666666667")
    expect(formatFeatureNumber(1e-7)).toBe("0.0000001")
    expect(formatFeatureNumber(-1e-12)).toBe("0")
    expect(formatFeatureNumber(1.3327498527356893)).toBe("1.3327498527")
    expect(formatFeatureNumber(12345)).toBe("12345")
    expect(formatFeatureNumber(2.5e15)).toBe("2500000000000000")
  })

  it("refuses non-finite values", () => {
    expect(() => formatFeatureNumber(Number.NaN)).toThrow(RangeError)
    expect(() => formatFeatureNumber(Number.POSITIVE_INFINITY)).toThrow(RangeError)
    expect(() => formatFeatureNumber(1e21)).toThrow(RangeError)
  })
})
