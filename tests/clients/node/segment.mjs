// Segment's official Node client (@segment/analytics-node), unchanged, pointed at eventpipe's collector.
//
//   node segment.mjs URL WRITE_KEY RUN AT_MS
//
// sends every call type for user "<RUN>-user" (explicit timestamps AT_MS and AT_MS+1000 ms, explicit
// messageIds "<RUN>-…", one event sent twice with its messageId as an app retrying would), flushes, closes
// and prints a JSON report. tests/test_clients.py runs it and reads the stored rows back from ClickHouse.
import { Analytics } from '@segment/analytics-node'

const [url, writeKey, run, atMs] = process.argv.slice(2)
if (!atMs) {
  console.error('usage: node segment.mjs URL WRITE_KEY RUN AT_MS')
  process.exit(2)
}
const at = new Date(Number(atMs))
const later = new Date(Number(atMs) + 1000)
const user = `${run}-user`
const anon = `${run}-anon`
const id = (name) => `${run}-${name}`
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

call('identify', { messageId: id('identify'), userId: user, anonymousId: anon, timestamp: at, context,
  traits: { email: 'node@example.com', name: 'Node Js', logins: 3 } })
const order = { messageId: id('track'), userId: user, event: 'Order Completed', timestamp: at, context,
  properties: { revenue: 12.5, currency: 'EUR', items: [{ sku: 'a-1', qty: 2 }] } }
call('track', order)
call('track', order) // the same messageId again: stored once
// no messageId or timestamp: the client makes both
call('track', { userId: user, event: 'Order Viewed', properties: { n: 1 }, context })
call('page', { messageId: id('page'), userId: user, category: 'Docs', name: 'Pricing', timestamp: later,
  properties: { url: 'https://shop.example/pricing', path: '/pricing', referrer: 'https://search.example/' },
  context })
call('screen', { messageId: id('screen'), userId: user, name: 'Settings', timestamp: later,
  properties: { tab: 'privacy' }, context })
call('group', { messageId: id('group'), userId: user, groupId: `${run}-group`, timestamp: later,
  traits: { name: 'Initech', employees: 420 }, context })
call('alias', { messageId: id('alias'), previousId: anon, userId: user, timestamp: later, context })

const results = await Promise.all(calls)
await analytics.closeAndFlush({ timeout: 15000 })
const failed = results.filter((r) => r !== null)
console.log(JSON.stringify({ library_version: analytics.VERSION, sent: results.length - failed.length,
  failed: failed.length, errors: [...new Set([...failed, ...errors])] }))
process.exit(failed.length || errors.length ? 1 : 0)
