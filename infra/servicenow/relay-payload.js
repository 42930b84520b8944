/*
 * jira-relay: the payload-building part of the ServiceNow side.
 *
 * Plain ES5 (no arrow functions, no let/const, no template strings) so that the
 * same file runs
 *   - inside ServiceNow, as the Script Include `RelayPayload` (global scope,
 *     "Accessible from: All application scopes"; see infra/servicenow/README.md),
 *     called by infra/servicenow/business-rule.js, and
 *   - in Node, where infra/servicenow/test/build-payloads.js feeds it fake
 *     GlideRecords and the relay's integration test posts what it builds.
 *
 * It only calls GlideRecord / GlideElement methods ServiceNow documents:
 *   record.getValue(field), record.getDisplayValue(field), record.getUniqueValue(),
 *   record.operation(), record.isNewRecord(), record[field].changes(),
 *   record[field].getJournalEntry(1).
 * It never writes to a record and never calls the network.
 *
 * What it builds (the JSON the relay's `servicenow` endpoint expects):
 *
 *   incident (or any task table's) insert/update
 *     {event: "incident.created" | "incident.updated" | "incident.commented"
 *             (named after the record's table: change_request.created, sc_task.updated, ...),
 *      sys_id, number, correlation_id (the paired Jira key, once the relay wrote it
 *      back; "" before), short_description, description, priority, state,
 *      close_code, close_notes, assigned_to (the sys_user's sys_id, "" when unassigned),
 *      comments,      newest additional comment (text only) when this update added one, else ""
 *      work_notes,    newest work note (text only) when this update added one, else ""
 *      sys_updated_by, sys_updated_on,
 *      changes: [{field, from, to, from_display, to_display}]}   watched fields that changed
 *   `incident.commented`: an update that added a comment / work note and changed no
 *   watched field. An update that did neither builds nothing (null).
 *
 *   sys_attachment insert on an incident
 *     {event: "incident.attachment", sys_id (the incident's), number,
 *      short_description, state, sys_updated_by (who uploaded), sys_updated_on,
 *      attachment: {sys_id, file_name, content_type, size_bytes,
 *                   download_url: "<instance>/api/now/attachment/<sys_id>/file"}}
 *
 *   sys_user insert/update/delete (docs/identity.md)
 *     {event: "sys_user.created" | "sys_user.updated" | "sys_user.deleted",
 *      sys_id, user_name, email, name, first_name, last_name, active, locked_out,
 *      u_jira_account_id, sys_updated_by (for a delete: who deleted), sys_updated_on,
 *      changes: [{field, from, to}]}   watched user fields that changed
 *   An update that changed no watched user field builds nothing (null).
 *
 *   sys_user_grmember insert/delete
 *     {event: "sys_user_grmember.created" | "sys_user_grmember.deleted",
 *      sys_id (the USER's, so one person's events keep their order), membership
 *      (the membership's sys_id), user_name, email, active (the user's), group (the
 *      group's name), sys_updated_by (who added / removed), sys_updated_on}
 */
var RelayPayload = (function () {
    // Fields whose changes are reported in `changes` (add the ones your rules use).
    var WATCHED_FIELDS = ['short_description', 'description', 'priority', 'impact', 'urgency',
        'state', 'assigned_to', 'assignment_group', 'category', 'close_code', 'close_notes'];

    // sys_user fields whose changes make a sys_user.updated (joiners, movers, leavers).
    var USER_FIELDS = ['active', 'locked_out', 'email', 'user_name', 'first_name', 'last_name', 'name'];

    // getJournalEntry(1) starts with a header line,
    // "2019-09-26 23:15:02 - Beth Anglin (Additional comments)\n"; the date is in the
    // session user's format and the label in their language, so match loosely:
    // "<anything> - <anything> (<label>)" as the whole first line.
    var JOURNAL_HEADER = /^[^\n]* - [^\n]*\([^\n]*\)[ \t]*\r?\n/;

    function text(v) {
        if (v === null || v === undefined) {
            return '';
        }
        return String(v);
    }

    function value(record, field) {
        return record ? text(record.getValue(field)) : '';
    }

    function display(record, field) {
        return record ? text(record.getDisplayValue(field)) : '';
    }

    function element(record, field) {
        var el = record ? record[field] : null;
        return el || null;
    }

    function changed(record, field) {
        var el = element(record, field);
        return !!(el && el.changes());
    }

    // Newest journal entry of `field` (comments / work_notes) when this operation
    // added one, without its header line and trailing blank lines; else "".
    function newJournalEntry(record, field) {
        if (!changed(record, field)) {
            return '';
        }
        var entry = text(element(record, field).getJournalEntry(1));
        return entry.replace(JOURNAL_HEADER, '').replace(/\s+$/, '');
    }

    function operation(record, opts) {
        if (opts && opts.operation) {
            return opts.operation;
        }
        if (typeof record.operation === 'function') {
            var op = text(record.operation());
            if (op) {
                return op;
            }
        }
        return record.isNewRecord() ? 'insert' : 'update';
    }

    function fieldChanges(current, previous, fields) {
        var out = [];
        for (var i = 0; i < fields.length; i++) {
            var field = fields[i];
            if (!changed(current, field)) {
                continue;
            }
            out.push({
                field: field,
                from: value(previous, field),
                to: value(current, field),
                from_display: display(previous, field),
                to_display: display(current, field)
            });
        }
        return out;
    }

    function instanceUrl(opts) {
        return text(opts && opts.instanceUrl).replace(/\/+$/, '');
    }

    /*
     * The payload for `current` (an incident, or with opts.incident a sys_attachment
     * record), or null when there is nothing to send.
     *
     * previous  the record before this update (after business rules); null for
     *           inserts, attachments, and async rules (no `previous` there: `from`
     *           is then "").
     * opts      {operation: "insert" | "update" (default: current.operation()),
     *            fields: [...] (default WATCHED_FIELDS),
     *            incident: the incident GlideRecord (attachments only),
     *            instanceUrl: "https://acme.service-now.com" (attachments only)}
     */
    function buildRelayPayload(current, previous, opts) {
        opts = opts || {};
        if (opts.incident) {
            return buildAttachmentPayload(current, opts.incident, opts);
        }
        var isInsert = operation(current, opts) === 'insert';
        // Events are named after the record's table: incident.created,
        // change_request.updated, sc_task.commented, ...
        var table = current.getTableName ? text(current.getTableName()) : '';
        if (table === '') {
            table = 'incident';
        }
        var changes = isInsert ? [] : fieldChanges(current, previous, opts.fields || WATCHED_FIELDS);
        var comments = newJournalEntry(current, 'comments');
        var workNotes = newJournalEntry(current, 'work_notes');
        var event = table + '.created';
        if (!isInsert) {
            if (changes.length > 0) {
                event = table + '.updated';
            } else if (comments !== '' || workNotes !== '') {
                event = table + '.commented';
            } else {
                return null; // nothing the relay cares about changed
            }
        }
        return {
            event: event,
            sys_id: text(current.getUniqueValue()),
            number: value(current, 'number'),
            correlation_id: value(current, 'correlation_id'),
            short_description: value(current, 'short_description'),
            description: value(current, 'description'),
            priority: value(current, 'priority'),
            state: value(current, 'state'),
            close_code: value(current, 'close_code'),
            close_notes: value(current, 'close_notes'),
            assigned_to: value(current, 'assigned_to'),
            comments: comments,
            work_notes: workNotes,
            sys_updated_by: value(current, 'sys_updated_by'),
            sys_updated_on: value(current, 'sys_updated_on'),
            changes: changes
        };
    }

    /* The payload for a new sys_attachment record of `incident`. */
    function buildAttachmentPayload(attachment, incident, opts) {
        var id = text(attachment.getUniqueValue());
        var size = parseInt(value(attachment, 'size_bytes'), 10);
        return {
            event: 'incident.attachment',
            sys_id: text(incident.getUniqueValue()),
            number: value(incident, 'number'),
            correlation_id: value(incident, 'correlation_id'),
            short_description: value(incident, 'short_description'),
            state: value(incident, 'state'),
            sys_updated_by: value(attachment, 'sys_created_by'),
            sys_updated_on: value(attachment, 'sys_created_on'),
            attachment: {
                sys_id: id,
                file_name: value(attachment, 'file_name'),
                content_type: value(attachment, 'content_type'),
                size_bytes: isNaN(size) ? 0 : size,
                download_url: instanceUrl(opts) + '/api/now/attachment/' + id + '/file'
            }
        };
    }

    /*
     * The payload for a sys_user record, or null when an update changed no watched
     * user field. opts: {operation: "insert" | "update" | "delete" (default:
     * current.operation()), by: who made the change (a delete: gs.getUserName(),
     * as sys_updated_by names the last editor, not the deleter)}.
     */
    function buildUserPayload(current, previous, opts) {
        opts = opts || {};
        var op = operation(current, opts);
        var changes = [];
        if (op === 'update') {
            var full = fieldChanges(current, previous, USER_FIELDS);
            for (var i = 0; i < full.length; i++) {
                changes.push({field: full[i].field, from: full[i].from, to: full[i].to});
            }
            if (changes.length === 0) {
                return null;
            }
        }
        var event = op === 'insert' ? 'sys_user.created'
            : (op === 'delete' ? 'sys_user.deleted' : 'sys_user.updated');
        return {
            event: event,
            sys_id: text(current.getUniqueValue()),
            user_name: value(current, 'user_name'),
            email: value(current, 'email'),
            name: value(current, 'name'),
            first_name: value(current, 'first_name'),
            last_name: value(current, 'last_name'),
            active: value(current, 'active'),
            locked_out: value(current, 'locked_out'),
            u_jira_account_id: value(current, 'u_jira_account_id'),
            sys_updated_by: text(opts.by) || value(current, 'sys_updated_by'),
            sys_updated_on: value(current, 'sys_updated_on'),
            changes: changes
        };
    }

    /*
     * The payload for a sys_user_grmember record (a membership added or removed).
     * opts: {operation: "insert" | "delete", user: the member's sys_user GlideRecord,
     * by: who made the change (gs.getUserName())}.
     */
    function buildMembershipPayload(current, opts) {
        opts = opts || {};
        var op = operation(current, opts);
        var user = opts.user || null;
        return {
            event: op === 'delete' ? 'sys_user_grmember.deleted' : 'sys_user_grmember.created',
            sys_id: value(current, 'user'),
            membership: text(current.getUniqueValue()),
            user_name: value(user, 'user_name'),
            email: value(user, 'email'),
            active: value(user, 'active'),
            group: display(current, 'group'),
            sys_updated_by: text(opts.by) || value(current, 'sys_updated_by'),
            sys_updated_on: value(current, 'sys_updated_on')
        };
    }

    /*
     * Echo guard: false when the change was made by the relay's integration user
     * (an incident's sys_updated_by, an attachment's sys_created_by), so what the
     * relay copied here from Jira is not copied back to Jira.
     */
    function shouldSend(current, integrationUser) {
        var user = text(integrationUser);
        if (user === '') {
            return true;
        }
        var by = value(current, 'sys_updated_by') || value(current, 'sys_created_by');
        return by.toLowerCase() !== user.toLowerCase();
    }

    return {
        WATCHED_FIELDS: WATCHED_FIELDS,
        USER_FIELDS: USER_FIELDS,
        buildRelayPayload: buildRelayPayload,
        buildAttachmentPayload: buildAttachmentPayload,
        buildUserPayload: buildUserPayload,
        buildMembershipPayload: buildMembershipPayload,
        shouldSend: shouldSend,
        type: 'RelayPayload'
    };
})();

if (typeof module !== 'undefined') {
    module.exports = {
        WATCHED_FIELDS: RelayPayload.WATCHED_FIELDS,
        buildRelayPayload: RelayPayload.buildRelayPayload,
        buildAttachmentPayload: RelayPayload.buildAttachmentPayload,
        buildUserPayload: RelayPayload.buildUserPayload,
        buildMembershipPayload: RelayPayload.buildMembershipPayload,
        USER_FIELDS: RelayPayload.USER_FIELDS,
        shouldSend: RelayPayload.shouldSend
    };
}
