#!/usr/bin/env node
/*
 * Builds the payloads the ServiceNow side (infra/servicenow/relay-payload.js)
 * would send for one person's life in ServiceNow (a joiner, a mover, a leaver),
 * using fake GlideRecords, and prints them as a JSON array on stdout:
 *
 *   [{"scenario": "...", "send": true|false, "payload": {...} | null}, ...]
 *
 * `send` is what the business rule would decide: the change was not made by the
 * relay's integration user (gs.getUserName()) and there was something to send.
 * The relay's integration test (tests/tests/it/servicenow_script.rs) posts every
 * `send: true` payload through the relay with examples/servicenow-users-to-jira.yaml.
 *
 *   RELAY_SN_USER_SYS_ID         the user's sys_id
 *   RELAY_SN_INTEGRATION_USER    the relay's user       (default relay.integration)
 *
 * Usage: node infra/servicenow/test/build-user-payloads.js
 */
'use strict';

var path = require('path');
var relay = require(path.join(__dirname, '..', 'relay-payload.js'));
var FakeGlideRecord = require(path.join(__dirname, 'fake-glide.js')).FakeGlideRecord;

var env = process.env;
var INTEGRATION_USER = env.RELAY_SN_INTEGRATION_USER || 'relay.integration';
var USER = env.RELAY_SN_USER_SYS_ID || '62826bf03710200044e0bfc8bcbe5df1';

var out = [];

// What the business rule does: skip the integration user's own changes, build,
// send what is not null.
function record(scenario, by, payload) {
    out.push({
        scenario: scenario,
        send: payload !== null && by !== INTEGRATION_USER,
        payload: payload
    });
}

// 1. An admin creates the user (a joiner).
var user = new FakeGlideRecord('sys_user', {
    operation: 'insert',
    values: {
        sys_id: USER,
        user_name: 'abel.tuter',
        email: 'abel.tuter@example.com',
        name: 'Abel Tuter',
        first_name: 'Abel',
        last_name: 'Tuter',
        active: 'true',
        locked_out: 'false',
        sys_updated_by: 'admin',
        sys_updated_on: '2026-12-06 08:00:00'
    }
});
record('user inserted', 'admin', relay.buildUserPayload(user, null, {by: 'admin'}));

function membership(id, group, op, on) {
    return new FakeGlideRecord('sys_user_grmember', {
        operation: op,
        values: {sys_id: id, user: USER, group: 'grp-' + id, sys_updated_by: 'admin', sys_updated_on: on},
        display: {group: group}
    });
}

// 2. Added to a group that grants Jira access.
record('added to Software Engineering', 'admin', relay.buildMembershipPayload(
    membership('m1', 'Software Engineering', 'insert', '2026-12-06 08:01:00'), {user: user, by: 'admin'}));

// 3. The relay writes the Jira account id into the user (its own change: not sent).
var step = user.update({values: {u_jira_account_id: '712020:abel', sys_updated_by: INTEGRATION_USER,
    sys_updated_on: '2026-12-06 08:01:30'}});
record('pairing written by the integration user (echo)', INTEGRATION_USER,
    relay.buildUserPayload(step[0], step[1], {by: INTEGRATION_USER}));
user = step[0];

// 4. A mover: out of Software Engineering, into the Service Desk.
record('removed from Software Engineering', 'admin', relay.buildMembershipPayload(
    membership('m1', 'Software Engineering', 'delete', '2026-12-06 09:00:00'), {user: user, by: 'admin'}));
record('added to Service Desk', 'admin', relay.buildMembershipPayload(
    membership('m2', 'Service Desk', 'insert', '2026-12-06 09:00:05'), {user: user, by: 'admin'}));

// 5. An update of a field no rule watches (the phone number): nothing to send.
step = user.update({values: {phone: '+44 20 7946 0000', sys_updated_by: 'admin',
    sys_updated_on: '2026-12-06 09:30:00'}});
record('update of an unwatched field', 'admin', relay.buildUserPayload(step[0], step[1], {by: 'admin'}));
user = step[0];

// 6. A leaver: deactivated.
step = user.update({values: {active: 'false', sys_updated_by: 'admin', sys_updated_on: '2026-12-06 17:00:00'}});
record('deactivated', 'admin', relay.buildUserPayload(step[0], step[1], {by: 'admin'}));
user = step[0];

process.stdout.write(JSON.stringify(out, null, 2) + '\n');
