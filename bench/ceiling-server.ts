/**
 * A reference server, run by hand (no bench starts it): the product's HTTP stack (HttpApiBuilder, the real
 * security middleware, NodeHttpServer) with a GET /trades/latest endpoint of the same URL-parameter
 * schema whose handler returns the API's answer from memory, as ready-made bytes. Its throughput is
 * the most the API could reach on this stack if the answer were cached: no SQL, no Schema
 * decode/encode, no JSON per request.
 *
 * `--variant` strips the stack further, to see which layer costs what:
 *   httpapi+security (default)  as above
 *   httpapi+security-notrace    as above, with the per-request tracing span switched off
 *                               (HttpMiddleware.withTracerDisabledWhen)
 *   httpapi                     HttpApiBuilder without the security middleware
 *   app                         NodeHttpServer + HttpServer.serve of an app that answers the bytes (no router, no HttpApi)
 *
 *   node dist/bench/bench/ceiling-server.js --port 8002 --body bench/.data/latest-body.bin --content-type "application/json" [--variant httpapi+security]
 */
import {
  HttpApi,
  HttpApiBuilder,
  HttpApiEndpoint,
  HttpApiGroup,
  HttpMiddleware,
  HttpServer,
  HttpServerResponse
} from "@effect/platform"
import { NodeHttpServer, NodeRuntime } from "@effect/platform-node"
import { Effect, Layer, Schema } from "effect"
import * as fs from "node:fs"
import { createServer } from "node:http"
import { parseArgs } from "node:util"
import { LatestParams } from "../src/api/Api.js"
import { SecurityLive } from "../src/api/Security.js"

const { values: args } = parseArgs({
  options: {
    port: { type: "string", default: "8002" },
    host: { type: "string", default: "127.0.0.1" },
    body: { type: "string" },
    "content-type": { type: "string", default: "application/json" },
    variant: { type: "string", default: "httpapi+security" }
  }
})
if (args.body === undefined) throw new Error("--body <file> is required")
const body = new Uint8Array(fs.readFileSync(args.body))
const contentType = args["content-type"]

class CeilingApi extends HttpApi.make("ceiling").add(
  HttpApiGroup.make("trades").add(
    HttpApiEndpoint.get("latest", "/trades/latest").setUrlParams(LatestParams).addSuccess(Schema.Unknown)
  )
) {}

const TradesLive = HttpApiBuilder.group(CeilingApi, "trades", (handlers) =>
  handlers.handle("latest", () => Effect.succeed(HttpServerResponse.uint8Array(body, { contentType })))
)

const NodeServer = NodeHttpServer.layer(createServer, { port: Number(args.port), host: args.host })
const ApiLive = HttpApiBuilder.api(CeilingApi).pipe(Layer.provide(TradesLive))

const variants = {
  "httpapi+security": HttpApiBuilder.serve().pipe(Layer.provide(SecurityLive), Layer.provide(ApiLive), Layer.provide(NodeServer)),
  "httpapi+security-notrace": HttpApiBuilder.serve().pipe(
    Layer.provide(SecurityLive),
    Layer.provide(ApiLive),
    Layer.provide(NodeServer),
    HttpMiddleware.withTracerDisabledWhen(() => true)
  ),
  httpapi: HttpApiBuilder.serve().pipe(Layer.provide(ApiLive), Layer.provide(NodeServer)),
  app: HttpServer.serve(Effect.sync(() => HttpServerResponse.uint8Array(body, { contentType }))).pipe(Layer.provide(NodeServer))
} as const
const variant = args.variant as keyof typeof variants
if (!(variant in variants)) throw new Error(`--variant must be one of ${Object.keys(variants).join(", ")}`)
const ServerLive: Layer.Layer<never, unknown> = variants[variant]

process.stdout.write(`ceiling server (${variant}, cached bytes) on ${args.host}:${args.port}, ${body.length} bytes\n`)
NodeRuntime.runMain(Layer.launch(ServerLive))
