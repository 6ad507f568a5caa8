import { describe, expect, it } from "vitest"
import { csvContracts, parseCsv, plainNumber, toCsv } from "../src/bi/csv.js"

describe("toCsv", () => {
  it("quotes exactly the fields that need it, byte for byte", () => {
    const csv = toCsv(
      ["name", "note"],
      [
        ["a,b", 'he said "hi"'],
        ["line1\nline2", null],
        ["cr\rhere", "crlf\r\nhere"],
        [" spaced ", ""],
        [1.5, "plain"]
      ]
    )
    expect(csv).toBe(
      'name,note\r\n"a,b","he said ""hi"""\r\n"line1\nline2",\r\n"cr\rhere","crlf\r\nhere"\r\n spaced ,\r\n1.5,plain\r\n'
    )
  })

  it("writes only the header line for zero rows", () => {
    expect(toCsv(csvContracts.daily_ohlc, [])).toBe("date,symbol,open,high,low,close,volume\r\n")
    expect(toCsv(csvContracts.daily_features, [])).toBe("date,symbol,close,log_return,volatility_7d,volatility_30d\r\n")
  })

  it("writes numbers without exponents and refuses non-finite ones", () => {
    expect(toCsv(["x"], [[1e-7], [-1.5e-10], [1e21], [-0], [123], [0.1]])).toBe(
      "x\r\n0.0000001\r\n-0.00000000015\r\n1000000000000000000000\r\n0\r\n123\r\n0.1\r\n"
    )
    expect(plainNumber(1.2345e25)).toBe("12345000000000000000000000")
    expect(plainNumber(-2.5e-7)).toBe("-0.00000025")
    expect(() => toCsv(["x"], [[Number.NaN]])).toThrow(RangeError)
    expect(() => toCsv(["x"], [[Number.NEGATIVE_INFINITY]])).toThrow(RangeError)
  })

  it("refuses rows whose width differs from the header and an empty header", () => {
    expect(() => toCsv(["a", "b"], [["1"]])).toThrow(/row 1 has 1 fields/)
    expect(() => toCsv([], [])).toThrow(RangeError)
  })
})

describe("csvContracts", () => {
  it("keeps the four stable headers", () => {
    expect(csvContracts).toEqual({
      daily_ohlc: ["date", "symbol", "open", "high", "low", "close", "volume"],
      daily_volume: ["date", "symbol", "volume", "quote_volume"],
      latest_prices: ["symbol", "last_price", "price_change_percent", "volume", "timestamp_utc"],
      daily_features: ["date", "symbol", "close", "log_return", "volatility_7d", "volatility_30d"]
    })
  })
})

describe("parseCsv", () => {
  it("round-trips toCsv output", () => {
    const rows = [
      ["2024-01-01", "BTCUSDT", "42283.58", "", "a,b", 'q"uote', "multi\r\nline\nbreaks", "\r", '""', ","]
    ]
    const header = ["c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9", "c10"]
    expect(parseCsv(toCsv(header, rows))).toEqual([header, ...rows])
    expect(parseCsv(toCsv(csvContracts.latest_prices, []))).toEqual([[...csvContracts.latest_prices]])
  })

  it("reads nulls as empty fields and single empty columns as empty records", () => {
    expect(parseCsv(toCsv(["a", "b", "c"], [[null, "x", null]]))).toEqual([["a", "b", "c"], ["", "x", ""]])
    expect(parseCsv(toCsv(["only"], [[""], ["v"]]))).toEqual([["only"], [""], ["v"]])
  })

  it("accepts LF line endings and a missing final line break", () => {
    expect(parseCsv('a,b\n"1\n2",3\n4,5')).toEqual([["a", "b"], ["1\n2", "3"], ["4", "5"]])
    expect(parseCsv("a,b\r\n1,2\n")).toEqual([["a", "b"], ["1", "2"]])
    expect(parseCsv("")).toEqual([])
    expect(parseCsv("a,")).toEqual([["a", ""]])
  })

  it("rejects malformed input", () => {
    expect(() => parseCsv('a,"unterminated\r\n')).toThrow(/unterminated/)
    expect(() => parseCsv('a,b"c\r\n')).toThrow(/quote inside/)
    expect(() => parseCsv('"a"b,c\r\n')).toThrow(/after a closing quote/)
    expect(() => parseCsv("a\rb\r\n")).toThrow(/bare CR/)
  })
})
