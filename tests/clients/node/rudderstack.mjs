// RudderStack's Node SDK (@rudderstack/rudder-sdk-node), unchanged, with the collector as its data plane.
//
//   node rudderstack.mjs URL WRITE_KEY RUN AT_MS
//
// sends every call type for user "<RUN>-user" (explicit timestamps AT_MS and AT_MS+1000 ms, explicit
// messageIds "<RUN>-…", one event sent twice with its messageId as an app retrying would; one track with
// neither), waits until the SDK reports each call delivered and prints a JSON report.
// tests/test_clients.py runs it and reads the stored rows back from ClickHouse.
import Analytics from '@rudderstack/rudder-sdk-node'
import { createRequire } from 'node:module'

const [url, writeKey, run, atMs] = process.argv.slice(2)
if (!atMs) {
  console.error('usage: node rudderstack.mjs URL WRITE_KEY RUN AT_MS')
  process.exit(2)
}
const { version } = createRequire(import.meta.url)('@rudderstack/rudder-sdk-node/package.json')
const at = new Date(Number(atMs))
const later = new Date(Number(atMs) + 1000)
const user = `${run}-user`
const anon = `${run}-anon`
const id = (name) => `${run}-${name}`
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

call('identify', { messageId: id('identify'), userId: user, anonymousId: anon, timestamp: at, context,
  traits: { email: 'rudder@example.com', name: 'Rudder Stack', logins: 3 } })
const order = { messageId: id('track'), userId: user, event: 'Order Completed', timestamp: at, context,
  properties: { revenue: 12.5, currency: 'EUR', items: [{ sku: 'a-1', qty: 2 }] } }
call('track', order)
call('track', order) // the same messageId again: stored once
// no messageId or timestamp: the client makes both (its time goes in originalTimestamp, not timestamp)
call('track', { userId: user, event: 'Order Viewed', properties: { n: 1 }, context })
call('page', { messageId: id('page'), userId: user, category: 'Docs', name: 'Pricing', timestamp: later,
  properties: { url: 'https://shop.example/pricing', path: '/pricing', referrer: 'https://search.example/' },
  context })
call('screen', { messageId: id('screen'), userId: user, name: 'Settings', timestamp: later,
  properties: { tab: 'privacy' }, context })
call('group', { messageId: id('group'), userId: user, groupId: `${run}-group`, timestamp: later,
  traits: { name: 'Initech', employees: 420 }, context })
call('alias', { messageId: id('alias'), previousId: anon, userId: user, timestamp: later, context })

await client.flush()
const results = await Promise.all(calls)
const failed = results.filter((r) => r !== null)
console.log(JSON.stringify({ library_version: version, sent: results.length - failed.length,
  failed: failed.length, errors: [...new Set([...failed, ...errors])] }))
process.exit(failed.length || errors.length ? 1 : 0)
