// Segment's official Node client (@segment/analytics-node), unchanged, pointed at eventpipe's collector.
//
//   node segment.mjs URL WRITE_KEY RUN AT_MS
//
// makes the calls of calls.mjs, waits until each is delivered and prints a JSON report.
// tests/test_clients.py runs it and reads the stored rows back from ClickHouse.
import { Analytics } from '@segment/analytics-node'
import { sendCalls } from './calls.mjs'

const [url, writeKey, run, atMs] = process.argv.slice(2)
if (!atMs) {
  console.error('usage: node segment.mjs URL WRITE_KEY RUN AT_MS')
  process.exit(2)
}
const context = {
  app: { name: 'node-shop', version: '5.0.2', build: '502' },
  os: { name: 'macOS', version: '15.1' },
  device: { manufacturer: 'Apple', model: 'MacBookPro18,3' },
  locale: 'pt-BR',
  timezone: 'America/Sao_Paulo',
  ip: '198.51.100.23',
}

const analytics = new Analytics({ writeKey, host: url, flushAt: 4, flushInterval: 50, maxRetries: 2 })
const errors = []
analytics.on('error', (err) => errors.push(String(err?.reason ?? err?.message ?? err)))
const calls = []
const call = (method, params) =>
  calls.push(new Promise((resolve) => analytics[method](params, (err) => resolve(err ? String(err?.reason ?? err) : null))))

sendCalls(call, { run, atMs, context, traits: { email: 'node@example.com', name: 'Node Js', logins: 3 } })

const results = await Promise.all(calls)
await analytics.closeAndFlush({ timeout: 15000 })
const failed = results.filter((r) => r !== null)
console.log(JSON.stringify({ library_version: analytics.VERSION, sent: results.length - failed.length,
  failed: failed.length, errors: [...new Set([...failed, ...errors])] }))
process.exit(failed.length || errors.length ? 1 : 0)
