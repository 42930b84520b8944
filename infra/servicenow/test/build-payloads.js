#!/usr/bin/env node
/*
 * Builds the payloads the ServiceNow side (infra/servicenow/relay-payload.js)
 * would send for one incident's life, using fake GlideRecords, and prints them
 * as a JSON array on stdout:
 *
 *   [{"scenario": "...", "send": true|false, "payload": {...} | null}, ...]
 *
 * `send` is what the business rule would decide: the echo guard (shouldSend)
 * passed and there was something to send. The relay's integration test
 * (tests/tests/it/servicenow_script.rs) posts every `send: true` payload
 * through the relay. Everything about the attachment can be pointed at a real
 * (sandbox) instance through the environment:
 *
 *   RELAY_SN_INSTANCE            instance URL (default https://example.service-now.com)
 *   RELAY_SN_INCIDENT_SYS_ID     the incident's sys_id
 *   RELAY_SN_ATTACHMENT_SYS_ID   the attachment's sys_id
 *   RELAY_SN_ATTACHMENT_NAME     its file name          (default error-log.txt)
 *   RELAY_SN_ATTACHMENT_TYPE     its content type       (default text/plain)
 *   RELAY_SN_ATTACHMENT_SIZE     its size in bytes      (default 42)
 *   RELAY_SN_INTEGRATION_USER    the relay's user       (default relay.integration)
 *
 * Usage: node infra/servicenow/test/build-payloads.js
 */
'use strict';

var path = require('path');
var relay = require(path.join(__dirname, '..', 'relay-payload.js'));
var FakeGlideRecord = require(path.join(__dirname, 'fake-glide.js')).FakeGlideRecord;

var env = process.env;
var INSTANCE = env.RELAY_SN_INSTANCE || 'https://example.service-now.com';
var INTEGRATION_USER = env.RELAY_SN_INTEGRATION_USER || 'relay.integration';
var INCIDENT = env.RELAY_SN_INCIDENT_SYS_ID || '46d44a5dc611227f01a6b2ce7ea3b1f2';
var ATTACHMENT = env.RELAY_SN_ATTACHMENT_SYS_ID || 'a83820b58f723300e7e16c7827bdeed2';

var STATE = { 1: 'New', 2: 'In Progress', 3: 'On Hold', 6: 'Resolved', 7: 'Closed' };
var PRIORITY = { 1: '1 - Critical', 2: '2 - High', 3: '3 - Moderate', 4: '4 - Low', 5: '5 - Planning' };

var out = [];

function record(scenario, current, previous, opts) {
    var payload = relay.buildRelayPayload(current, previous, opts);
    out.push({
        scenario: scenario,
        send: payload !== null && relay.shouldSend(current, INTEGRATION_USER),
        payload: payload
    });
}

// 1. A user creates the incident.
var incident = new FakeGlideRecord('incident', {
    operation: 'insert',
    values: {
        sys_id: INCIDENT,
        number: 'INC0010042',
        short_description: 'VPN drops every 10 minutes',
        description: 'Since this morning the VPN client disconnects every 10 minutes.\n\nAffects the whole sales team.',
        priority: '2',
        impact: '2',
        urgency: '2',
        state: '1',
        assigned_to: '',
        sys_updated_by: 'beth.anglin',
        sys_updated_on: '2026-11-23 09:00:00'
    },
    display: { priority: PRIORITY[2], state: STATE[1] }
});
record('insert', incident, null);

// 2. The service desk takes it: state New -> In Progress, assigned.
var step = incident.update({
    values: {
        state: '2',
        assigned_to: '681ccaf9c0a8016400b98a06818d57c7',
        sys_updated_by: 'fred.luddy',
        sys_updated_on: '2026-11-23 09:05:00'
    },
    display: { state: STATE[2], assigned_to: 'Fred Luddy' }
});
record('update state 1 -> 2', step[0], step[1]);
incident = step[0];

// 3. An additional comment (and nothing else).
step = incident.update(
    { values: { sys_updated_by: 'fred.luddy', sys_updated_on: '2026-11-23 09:30:00' } },
    {
        comments: {
            on: '2026-11-23 09:30:00',
            by: 'Fred Luddy',
            text: 'The VPN concentrator was restarted.\nPlease tell us if it happens again.'
        }
    }
);
record('comment added', step[0], step[1]);
incident = step[0];

// 4. An attachment on the incident (business rule on sys_attachment).
var attachment = new FakeGlideRecord('sys_attachment', {
    operation: 'insert',
    values: {
        sys_id: ATTACHMENT,
        table_name: 'incident',
        table_sys_id: INCIDENT,
        file_name: env.RELAY_SN_ATTACHMENT_NAME || 'error-log.txt',
        content_type: env.RELAY_SN_ATTACHMENT_TYPE || 'text/plain',
        size_bytes: env.RELAY_SN_ATTACHMENT_SIZE || '42',
        sys_created_by: 'fred.luddy',
        sys_created_on: '2026-11-23 09:40:00',
        sys_updated_by: 'fred.luddy',
        sys_updated_on: '2026-11-23 09:40:00'
    }
});
record('attachment', attachment, null, { incident: incident, instanceUrl: INSTANCE });

// 5. Resolved: state In Progress -> Resolved with close code and notes.
step = incident.update({
    values: {
        state: '6',
        close_code: 'Solved (Permanently)',
        close_notes: 'Firmware of the VPN concentrator updated.',
        sys_updated_by: 'fred.luddy',
        sys_updated_on: '2026-11-23 11:00:00'
    },
    display: { state: STATE[6] }
});
record('resolve state 2 -> 6 with close_code', step[0], step[1]);
incident = step[0];

// 6. The relay's integration user copies a Jira comment here: must not come back.
step = incident.update(
    { values: { sys_updated_by: INTEGRATION_USER, sys_updated_on: '2026-11-23 11:05:00' } },
    {
        comments: {
            on: '2026-11-23 11:05:00',
            by: 'Relay Integration',
            text: 'Jira SUP-1: thanks, confirmed fixed.'
        }
    }
);
record('update by the integration user (echo)', step[0], step[1]);

// 7. An update that touches no watched field and adds no journal entry.
step = incident.update({
    values: { sys_updated_by: 'fred.luddy', sys_updated_on: '2026-11-23 11:10:00', sys_mod_count: '7' }
});
record('update of an unwatched field', step[0], step[1]);

process.stdout.write(JSON.stringify(out, null, 2) + '\n');
