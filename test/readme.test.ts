import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { EnvSchema } from '../src/config.js'
import { errorTable } from '../src/errors.js'

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8')
/** GitHub's heading anchors: lowercase, spaces to dashes, punctuation dropped. */
const anchors = new Set([...readme.matchAll(/^#+ (.+)$/gm)].map(match => (match[1] as string).toLowerCase().replace(/[^a-z0-9 -]/g, '').replaceAll(' ', '-')))

describe('README.md stays true', () => {
  it('documents every environment variable the broker reads', () => {
    const documented = Object.keys(EnvSchema.shape).filter(name => !readme.includes(`\`${name}\``) && !readme.includes(`${name}\`,`))
    expect(documented).toEqual([])
  })

  it('lists every error code', () => {
    expect(Object.keys(errorTable).filter(code => !readme.includes(`\`${code}\``))).toEqual([])
  })

  it('has the runbook section every alert links to', () => {
    const rules = parse(readFileSync(new URL('../deploy/prometheus/alerts.yaml', import.meta.url), 'utf8')) as { groups: Array<{ rules: Array<{ alert: string, annotations: { runbook_url: string } }> }> }
    for (const rule of rules.groups.flatMap(group => group.rules)) {
      const anchor = rule.annotations.runbook_url.split('#')[1] as string
      expect(anchors, `README section for ${rule.alert}`).toContain(anchor)
    }
  })

  it('names the npm scripts it tells people to run', () => {
    const scripts = Object.keys((JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { scripts: Record<string, string> }).scripts)
    for (const script of [...readme.matchAll(/npm run ([a-z][a-z-]*)/g)].map(match => match[1] as string)) expect(scripts).toContain(script)
  })
})
