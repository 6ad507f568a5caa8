/** The stable CSV contracts served to BI tools: column names and order never change. */
export const csvContracts = {
  daily_ohlc: ["date", "symbol", "open", "high", "low", "close", "volume"],
  daily_volume: ["date", "symbol", "volume", "quote_volume"],
  latest_prices: ["symbol", "last_price", "price_change_percent", "volume", "timestamp_utc"],
  daily_features: ["date", "symbol", "close", "log_return", "volatility_7d", "volatility_30d"]
} as const
export type CsvContract = keyof typeof csvContracts

export type CsvValue = string | number | null

const CRLF = "\r\n"
const needsQuotes = /[",\r\n]/

/** A finite number as plain digits: `String(x)`, with any exponent spelled out (1e-7 → "0.0000001"). */
export const plainNumber = (x: number): string => {
  if (!Number.isFinite(x)) throw new RangeError(`cannot write ${x} to CSV`)
  const text = String(x)
  const m = /^(-?)(\d+)(?:\.(\d+))?e([+-]\d+)$/.exec(text)
  if (m === null) return text
  const [, sign = "", whole = "", fraction = "", exponent = "0"] = m
  const digits = whole + fraction
  const point = whole.length + Number(exponent)
  if (point <= 0) return `${sign}0.${"0".repeat(-point)}${digits}`
  if (point >= digits.length) return `${sign}${digits}${"0".repeat(point - digits.length)}`
  return `${sign}${digits.slice(0, point)}.${digits.slice(point)}`
}

const field = (value: CsvValue): string => {
  if (value === null) return ""
  const text = typeof value === "number" ? plainNumber(value) : value
  return needsQuotes.test(text) ? `"${text.replaceAll('"', '""')}"` : text
}

/**
 * RFC 4180 CSV: header first, every record ends in CRLF (so zero rows give the header line alone), a field
 * is quoted iff it holds `,` `"` CR or LF, with quotes doubled; null is an empty field. Throws a RangeError
 * for an empty header, a row whose width differs from the header's, or a non-finite number.
 */
export const toCsv = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<CsvValue>>): string => {
  if (header.length === 0) throw new RangeError("a CSV header needs at least one column")
  const lines = [header.map(field).join(",")]
  rows.forEach((row, i) => {
    if (row.length !== header.length) {
      throw new RangeError(`CSV row ${i + 1} has ${row.length} fields, the header has ${header.length}`)
    }
    lines.push(row.map(field).join(","))
  })
  return lines.join(CRLF) + CRLF
}

/**
 * RFC 4180 parser: records end in CRLF or LF (a final terminator adds no record), quoted fields may hold
 * commas, doubled quotes and line breaks. Throws a SyntaxError for an unterminated quoted field, a quote
 * inside an unquoted field, text after a closing quote, or a bare CR outside quotes.
 */
export const parseCsv = (text: string): Array<Array<string>> => {
  const records: Array<Array<string>> = []
  const n = text.length
  if (n === 0) return records
  const fail = (at: number, what: string) => new SyntaxError(`CSV: ${what} at offset ${at}`)
  let record: Array<string> = []
  let i = 0
  for (;;) {
    if (text[i] === '"') {
      const start = i
      let value = ""
      i++
      for (;;) {
        const close = text.indexOf('"', i)
        if (close < 0) throw fail(start, "unterminated quoted field")
        value += text.slice(i, close)
        if (text[close + 1] === '"') {
          value += '"'
          i = close + 2
        } else {
          i = close + 1
          break
        }
      }
      if (i < n && text[i] !== "," && text[i] !== "\n" && !(text[i] === "\r" && text[i + 1] === "\n")) {
        throw fail(i, "text after a closing quote")
      }
      record.push(value)
    } else {
      let j = i
      while (j < n && text[j] !== "," && text[j] !== "\n" && text[j] !== "\r") {
        if (text[j] === '"') throw fail(j, "a quote inside an unquoted field")
        j++
      }
      if (text[j] === "\r" && text[j + 1] !== "\n") throw fail(j, "a bare CR")
      record.push(text.slice(i, j))
      i = j
    }
    if (i >= n) {
      records.push(record)
      return records
    }
    if (text[i] === ",") {
      i++
      continue
    }
    i += text[i] === "\r" ? 2 : 1
    records.push(record)
    record = []
    if (i >= n) return records
  }
}
