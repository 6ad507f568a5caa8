/**
 * A Server-Sent Events parser (the WHATWG "event stream interpretation"), fed with decoded text as it
 * arrives. The dashboard reads /stream with fetch() and a body reader instead of EventSource, which
 * cannot send the x-api-key header. No DOM: the tests run it under Node.
 */

export interface SseEvent {
  /** The `event:` field; "message" when absent. */
  readonly event: string
  /** The `data:` lines joined with "\n". */
  readonly data: string
  /** The last event id after this event (the `id:` field, or the one before it). */
  readonly id: string
}

export class SseParser {
  private buffer = ""
  private pendingCr = false
  private event = ""
  private data: Array<string> = []
  private hasData = false
  /** The last event id seen: what a reconnection sends as Last-Event-ID ("" before any). */
  lastEventId = ""
  /** The reconnection delay the server asked for (`retry:`), in ms. */
  retryMs: number | undefined = undefined

  /** Feeds a chunk of the stream (any split, even inside a line or a CRLF); returns the events it completed. */
  push(chunk: string): Array<SseEvent> {
    const events: Array<SseEvent> = []
    let text = chunk
    if (this.pendingCr) {
      // a CRLF split across chunks: the CR ended the line already
      if (text.startsWith("\n")) text = text.slice(1)
      this.pendingCr = false
    }
    this.buffer += text
    let start = 0
    for (let i = 0; i < this.buffer.length; i++) {
      const c = this.buffer.charCodeAt(i)
      if (c !== 10 && c !== 13) continue
      this.line(this.buffer.slice(start, i), events)
      if (c === 13) {
        if (i + 1 === this.buffer.length) this.pendingCr = true
        else if (this.buffer.charCodeAt(i + 1) === 10) i++
      }
      start = i + 1
    }
    this.buffer = this.buffer.slice(start)
    return events
  }

  private line(line: string, events: Array<SseEvent>): void {
    if (line === "") {
      if (this.hasData) {
        events.push({ event: this.event === "" ? "message" : this.event, data: this.data.join("\n"), id: this.lastEventId })
      }
      this.event = ""
      this.data = []
      this.hasData = false
      return
    }
    if (line.startsWith(":")) return // a comment: the heartbeat
    const colon = line.indexOf(":")
    const field = colon === -1 ? line : line.slice(0, colon)
    let value = colon === -1 ? "" : line.slice(colon + 1)
    if (value.startsWith(" ")) value = value.slice(1)
    switch (field) {
      case "event":
        this.event = value
        break
      case "data":
        this.data.push(value)
        this.hasData = true
        break
      case "id":
        if (!value.includes("\0")) this.lastEventId = value
        break
      case "retry":
        if (/^\d+$/.test(value)) this.retryMs = Number(value)
        break
    }
  }
}
