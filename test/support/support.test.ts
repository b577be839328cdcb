/**
 * The shared test helpers are what the other tests stand on, so each is checked here: a proxy that did
 * not really cut the connection, or a teardown that stopped at the first failure, would let other
 * tests pass for the wrong reason.
 */
import { connect, createServer, type Server, type Socket } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createCleanup, useCleanup } from './fixtures.js'
import { captureLogs } from './logs.js'
import { startTcpProxy } from './tcp-proxy.js'
import { waitFor } from './wait.js'

/** Connects, sends `text` and resolves with the first reply (or the connection error's code). */
async function exchange (port: number, text: string, timeoutMs = 1000): Promise<string> {
  return await new Promise(resolve => {
    const socket: Socket = connect(port, '127.0.0.1')
    const timer = setTimeout(() => { socket.destroy(); resolve('silence') }, timeoutMs)
    socket.once('connect', () => { socket.write(text) })
    socket.once('data', data => { clearTimeout(timer); socket.destroy(); resolve(data.toString()) })
    socket.once('error', (err: NodeJS.ErrnoException) => { clearTimeout(timer); resolve(err.code ?? err.message) })
  })
}

describe('startTcpProxy', () => {
  let echo: Server
  let echoPort: number
  beforeAll(async () => {
    echo = createServer(socket => {
      socket.on('data', data => { socket.write(`echo ${data.toString()}`) })
      socket.on('error', () => {}) // the proxy resets connections on purpose
    })
    await new Promise<void>(resolve => { echo.listen(0, '127.0.0.1', resolve) })
    echoPort = (echo.address() as { port: number }).port
  })
  afterAll(async () => { await new Promise<void>(resolve => { echo.close(() => { resolve() }) }) })

  it('passes bytes both ways, holds them while frozen and delivers them on thaw', async () => {
    const proxy = await startTcpProxy({ port: echoPort })
    try {
      expect(await exchange(proxy.port, 'one')).toBe('echo one')
      proxy.freeze()
      const reply = exchange(proxy.port, 'two', 3000)
      expect(await exchange(proxy.port, 'three', 300)).toBe('silence')
      proxy.thaw()
      expect(await reply).toBe('echo two')
    } finally {
      await proxy.close()
    }
  })

  it('refuses connections (and drops open ones) until accept(), on the same port', async () => {
    const proxy = await startTcpProxy({ port: echoPort, host: '127.0.0.1' })
    try {
      const open = connect(proxy.port, '127.0.0.1')
      await new Promise(resolve => open.once('connect', resolve))
      const dropped = new Promise(resolve => open.once('close', resolve))
      await proxy.refuse()
      await dropped
      expect(await exchange(proxy.port, 'x')).toBe('ECONNREFUSED')
      await proxy.accept()
      expect(await exchange(proxy.port, 'back')).toBe('echo back')
    } finally {
      await proxy.close()
    }
    expect(await exchange(proxy.port, 'x')).toBe('ECONNREFUSED')
  })
})

describe('captureLogs', () => {
  it('keeps every line of a logger with the production options, at the level asked for', () => {
    const logs = captureLogs('info')
    logs.log.debug('hidden at info')
    logs.log.info({ credentialId: 'kivra', accessToken: 'at-must-not-appear' }, 'token minted')
    logs.log.warn({ err: Object.assign(new Error('boom'), { config: { headers: { 'X-Vault-Token': 'hvs.must-not-appear' } } }) }, 'refresh failed')
    expect(logs.lines).toHaveLength(2)
    expect(logs.messages()).toEqual(['token minted', 'refresh failed'])
    expect(logs.entries()[0]).toMatchObject({ level: 30, credentialId: 'kivra', accessToken: '[redacted]' })
    expect(logs.text()).not.toContain('must-not-appear')
    expect(captureLogs().log.level).toBe('debug')
  })
})

describe('waitFor', () => {
  it('resolves with the time the condition first held', async () => {
    const due = Date.now() + 100
    const at = await waitFor('the due time', () => Date.now() >= due, { interval: 10 })
    expect(at).toBeGreaterThanOrEqual(due)
    expect(at - due).toBeLessThan(1000)
  })

  it('fails naming what it waited for once the timeout has passed', async () => {
    const started = Date.now()
    await expect(waitFor('a condition that never holds', () => false, { timeout: 150, interval: 10 }))
      .rejects.toThrow('timed out after 150 ms waiting for a condition that never holds')
    expect(Date.now() - started).toBeGreaterThanOrEqual(150)
  })

  it('fails at once when the condition throws', async () => {
    const started = Date.now()
    await expect(waitFor('anything', async () => { throw new Error('the broker exited') }, { timeout: 5000 })).rejects.toThrow('the broker exited')
    expect(Date.now() - started).toBeLessThan(1000)
  })
})

describe('useCleanup', () => {
  const closed: string[] = []

  describe('registers an afterEach that', () => {
    const cleanup = useCleanup()
    it('takes a resource in the line that opens it', () => {
      const first = cleanup.add({ close: () => { closed.push('first') } })
      expect(first).toHaveProperty('close')
      cleanup.add({ stop: async () => { closed.push('stopped') } })
      cleanup.add({ disconnect: () => { closed.push('disconnected') } })
      cleanup.add(first, () => { closed.push('closed its own way') })
      cleanup.defer(() => { closed.push('deferred') })
      expect(closed).toEqual([])
    })
    it('ran everything after the previous test, last registered first', () => {
      expect(closed.splice(0)).toEqual(['deferred', 'closed its own way', 'disconnected', 'stopped', 'first'])
    })
  })

  it('runs every close even when one fails, then rethrows that failure', async () => {
    const cleanup = createCleanup()
    cleanup.defer(() => { closed.push('a') })
    cleanup.defer(async () => { closed.push('b'); throw new Error('b failed') })
    cleanup.defer(() => { closed.push('c') })
    await expect(cleanup.run()).rejects.toThrow('b failed')
    expect(closed.splice(0)).toEqual(['c', 'b', 'a'])
    await cleanup.run() // nothing left
    expect(closed).toEqual([])
  })

  it('reports several failures together', async () => {
    const cleanup = createCleanup()
    cleanup.add({ close: () => { throw new Error('one') } })
    cleanup.add({ stop: async () => { throw new Error('two') } })
    const failure = await cleanup.run().then(() => undefined, (err: unknown) => err)
    expect(failure).toBeInstanceOf(AggregateError)
    expect((failure as AggregateError).errors.map(err => (err as Error).message)).toEqual(['two', 'one'])
  })
})
