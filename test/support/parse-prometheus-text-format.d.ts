/** The parser the metrics tests read /metrics with (the package ships no types): prom2json's shape. */
declare module "parse-prometheus-text-format" {
  export interface ParsedSample {
    readonly labels?: Record<string, string>
    /** Counters, gauges, untyped. */
    readonly value?: string
    /** Histograms: cumulative counts by upper bound, and the totals. */
    readonly buckets?: Record<string, string>
    readonly count?: string
    readonly sum?: string
  }
  export interface ParsedFamily {
    readonly name: string
    readonly help: string
    readonly type: "COUNTER" | "GAUGE" | "HISTOGRAM" | "SUMMARY" | "UNTYPED"
    readonly metrics: ReadonlyArray<ParsedSample>
  }
  export default function parsePrometheusTextFormat(text: string): Array<ParsedFamily>
}
