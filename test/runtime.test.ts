import { readFileSync } from 'node:fs'
import semver from 'semver'
import { describe, expect, it } from 'vitest'

/*
 * Which Node the broker supports (package.json `engines`, README "Runtime", the Dockerfile) and what its
 * production dependencies declare, read from package-lock.json: what `npm ci --omit=dev` installs.
 */

const read = (path: string): string => readFileSync(new URL(`../${path}`, import.meta.url), 'utf8')
const pkg = JSON.parse(read('package.json')) as { engines: { node: string } }
const lock = JSON.parse(read('package-lock.json')) as { packages: Record<string, { version?: string, dev?: boolean, engines?: Record<string, string> | string[] }> }
const readme = read('README.md')

/** name@version and declared node range of every production package in the lock. */
const production = Object.entries(lock.packages)
  .filter(([path, entry]) => path !== '' && entry.dev !== true)
  .flatMap(([path, entry]) => {
    const engines = entry.engines
    const node = Array.isArray(engines) ? undefined : engines?.node
    return node === undefined ? [] : [{ name: `${path.split('node_modules/').at(-1)!}@${entry.version ?? '?'}`, node }]
  })

describe('runtime', () => {
  it('supports Node 22 LTS and newer', () => {
    expect(semver.minVersion(pkg.engines.node)?.major).toBe(22)
    expect(semver.satisfies('24.0.0', pkg.engines.node)).toBe(true)
    expect(readme).toMatch(/Node 22 LTS or newer/)
  })

  it('installs no production dependency that asks for more than `engines` says', () => {
    expect(production.length).toBeGreaterThan(50)
    const stricter = production.filter(dependency => !semver.subset(pkg.engines.node, dependency.node, { includePrerelease: false }))
    expect(stricter).toEqual([])
  })

  it('names in the README every production dependency that declares no support for Node 20, which the tests still run on', () => {
    const beyond20 = production.filter(dependency => !semver.intersects(dependency.node, '20.x'))
    // cookie@2 (fastify → light-my-request, behind inject() only) is the one today.
    for (const dependency of beyond20) expect(readme, dependency.name).toContain(`\`${dependency.name.replace(/@[^@]+$/, '')}\``)
  })
})
