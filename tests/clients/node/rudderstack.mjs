// RudderStack's Node SDK (@rudderstack/rudder-sdk-node), unchanged, with the collector as its data plane.
//
//   node rudderstack.mjs URL WRITE_KEY RUN AT_MS
//
// makes the calls of calls.mjs, waits until each is delivered and prints a JSON report.
// tests/test_clients.py runs it and reads the stored rows back from ClickHouse.
import Analytics from '@rudderstack/rudder-sdk-node'
import { sendCalls } from './calls.mjs'
import { createRequire } from 'node:module'

const [url, writeKey, run, atMs] = process.argv.slice(2)
if (!atMs) {
  console.error('usage: node rudderstack.mjs URL WRITE_KEY RUN AT_MS')
  process.exit(2)
}
const { version } = createRequire(import.meta.url)('@rudderstack/rudder-sdk-node/package.json')
const context = {
  app: { name: 'rudder-shop', version: '7.3.0', build: '730' },
  os: { name: 'Windows', version: '11' },
  device: { manufacturer: 'Dell', model: 'XPS 13' },
  locale: 'ja-JP',
  timezone: 'Asia/Tokyo',
  ip: '192.0.2.201',
}

const errors = []
// the data plane URL is the collector; the SDK posts gzip batches to <URL>/v1/batch
const client = new Analytics(writeKey, { dataPlaneUrl: url, flushAt: 4, flushInterval: 50, retryCount: 2,
  logLevel: 'error', errorHandler: (err) => errors.push(String(err?.message ?? err)) })
const calls = []
const call = (method, params) =>
  calls.push(new Promise((resolve) => client[method](params, (err) => resolve(err ? String(err?.message ?? err) : null))))

sendCalls(call, { run, atMs, context, traits: { email: 'rudder@example.com', name: 'Rudder Stack', logins: 3 } })

await client.flush()
const results = await Promise.all(calls)
const failed = results.filter((r) => r !== null)
console.log(JSON.stringify({ library_version: version, sent: results.length - failed.length,
  failed: failed.length, errors: [...new Set([...failed, ...errors])] }))
process.exit(failed.length || errors.length ? 1 : 0)
