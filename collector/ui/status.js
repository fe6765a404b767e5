// The status view: topics with partitions, offsets and sizes (what
// `logpost topics` shows) and consumer groups with their lag.

import { h, fill, fmtBytes, fmtInt, fmtTime } from './dom.js';
import { getJson } from './api.js';

export async function loadStatus(topicsEl, groupsEl, signal) {
  const [topics, groups] = await Promise.all([
    getJson('/v1/topics', {}, signal),
    getJson('/v1/groups', {}, signal),
  ]);
  const rows = [];
  for (const t of topics.topics || []) {
    rows.push(h('tr', { class: 'topic', 'data-topic': t.name },
      h('td', {}, h('strong', { text: t.name })),
      h('td', { class: 'num', text: String(t.partitions.length) }),
      h('td', { class: 'num', text: fmtInt(t.records) }),
      h('td', { class: 'num', text: fmtBytes(t.size_bytes) }),
      h('td', { text: [t.retention_age ? `age ${t.retention_age}` : '', t.retention_bytes ? `${fmtBytes(t.retention_bytes)}/partition` : ''].filter(Boolean).join(', ') || 'forever' }),
      h('td', { text: fmtTime(t.created_ms) })));
    for (const p of t.partitions) {
      rows.push(h('tr', { class: 'partition' },
        h('td', { text: `  partition ${p.partition}` }),
        h('td', { class: 'num muted', text: `${fmtInt(p.log_start_offset)}–${fmtInt(p.high_watermark)}` }),
        h('td', { class: 'num', text: fmtInt(p.records) }),
        h('td', { class: 'num', text: fmtBytes(p.size_bytes) }),
        h('td', { class: 'muted', text: `${p.segments} segment${p.segments === 1 ? '' : 's'}` }),
        h('td', {})));
    }
  }
  fill(topicsEl,
    h('thead', {}, h('tr', {}, ['topic', 'partitions / offsets', 'records', 'size', 'retention', 'created'].map((c) => h('th', { text: c })))),
    h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: 6, class: 'muted', text: 'No topics yet.' }))));
  const grows = [];
  for (const g of groups.groups || []) {
    grows.push(h('tr', { class: 'group', 'data-group': g.group },
      h('td', {}, h('strong', { text: g.group })),
      h('td', { text: `${g.state}, ${g.members} member${g.members === 1 ? '' : 's'}` }),
      h('td', {}), h('td', {}),
      h('td', { class: 'num', text: fmtInt(g.lag) })));
    for (const p of g.partitions) {
      grows.push(h('tr', { class: 'partition' },
        h('td', { text: `  ${p.topic}/${p.partition}` }), h('td', {}),
        h('td', { class: 'num', text: fmtInt(p.committed) }),
        h('td', { class: 'num', text: p.high_watermark === null ? '(topic deleted)' : fmtInt(p.high_watermark) }),
        h('td', { class: 'num', text: p.lag === null ? '' : fmtInt(p.lag) })));
    }
  }
  fill(groupsEl,
    h('thead', {}, h('tr', {}, ['group', 'state', 'committed', 'high watermark', 'lag'].map((c) => h('th', { text: c })))),
    h('tbody', {}, grows.length ? grows : h('tr', {}, h('td', { colspan: 5, class: 'muted', text: 'No consumer group has committed offsets.' }))));
}
