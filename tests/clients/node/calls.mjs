// The calls both Node programs make, in order: every call type for user "<RUN>-user" (explicit timestamps
// AT_MS and AT_MS+1000 ms, explicit messageIds "<RUN>-…", one event sent twice with its messageId as an app
// retrying would, one track with neither). `call(method, params)` is the client's own; `traits` its identify's.
export function sendCalls (call, { run, atMs, context, traits }) {
  const at = new Date(Number(atMs))
  const later = new Date(Number(atMs) + 1000)
  const user = `${run}-user`
  const anon = `${run}-anon`
  const id = (name) => `${run}-${name}`
  call('identify', { messageId: id('identify'), userId: user, anonymousId: anon, timestamp: at, context, traits })
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
}
