import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { parse } from 'yaml'

/*
 * The alert rules' own unit tests (deploy/prometheus/alerts.test.yaml), run by promtool, Prometheus' rule
 * checker: each alert fires when it should and is silent on a healthy broker. promtool comes with Debian's
 * `prometheus` package, which .ci/run installs. Missing locally, the tests are skipped with a note on how to
 * get it; under CI=true a missing promtool fails.
 */

const dir = fileURLToPath(new URL('../../deploy/prometheus/', import.meta.url))
const install = 'promtool is missing: install it with `apt-get install prometheus` (Debian/Ubuntu; only the promtool binary is needed), or put a promtool from a Prometheus release on PATH'
const version = spawnSync('promtool', ['--version'], { encoding: 'utf8' })
const available = version.status === 0
const inCi = process.env.CI === 'true' || process.env.CI === '1'

interface AlertTest { alertname: string, exp_alerts: unknown[] | null }
const rules = (parse(readFileSync(`${dir}alerts.yaml`, 'utf8')) as { groups: Array<{ rules: Array<{ alert: string }> }> }).groups.flatMap(group => group.rules)
const unitTests = (parse(readFileSync(`${dir}alerts.test.yaml`, 'utf8')) as { rule_files: string[], tests: Array<{ alert_rule_test?: AlertTest[] }> })

describe('deploy/prometheus/alerts.test.yaml', () => {
  it('tests every alert both firing and silent', () => {
    expect(unitTests.rule_files).toEqual(['alerts.yaml'])
    const cases = unitTests.tests.flatMap(test => test.alert_rule_test ?? [])
    for (const { alert } of rules) {
      const mine = cases.filter(test => test.alertname === alert)
      expect(mine.some(test => (test.exp_alerts ?? []).length > 0), `${alert} has no firing case`).toBe(true)
      expect(mine.some(test => (test.exp_alerts ?? []).length === 0), `${alert} has no silent case`).toBe(true)
    }
  })

  if (!available && !inCi) process.stderr.write(`test/deploy/promtool.test.ts: ${install}\n`)

  it.skipIf(!available && !inCi)(`passes \`promtool check rules\` and \`promtool test rules\`${available ? '' : ` (${install})`}`, () => {
    expect(available, install).toBe(true)
    const check = spawnSync('promtool', ['check', 'rules', 'alerts.yaml'], { cwd: dir, encoding: 'utf8' })
    expect(check.status, `${check.stdout}${check.stderr}`).toBe(0)
    const test = spawnSync('promtool', ['test', 'rules', 'alerts.test.yaml'], { cwd: dir, encoding: 'utf8' })
    expect(test.status, `${test.stdout}${test.stderr}`).toBe(0)
    expect(test.stdout).toMatch(/SUCCESS/)
  })
})
