// Standalone fake Binance REST server for manual use: PORT=8089 node <compiled fakeBinanceMain.js>
import { startFakeBinance } from "./fakeBinance.js"

const fake = await startFakeBinance({ port: Number(process.env["PORT"] ?? 0) })
console.log(fake.url)
const stop = (): void => {
  void fake.close().then(() => process.exit(0))
}
process.once("SIGINT", stop).once("SIGTERM", stop)
