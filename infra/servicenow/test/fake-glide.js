/*
 * A tiny stand-in for ServiceNow's GlideRecord / GlideElement, enough for
 * infra/servicenow/relay-payload.js: getValue, getDisplayValue, getUniqueValue,
 * operation, isNewRecord, isValidField, getTableName, and per field an element
 * with changes(), getValue(), getDisplayValue(), getJournalEntry(n) — with
 * ServiceNow's semantics (getValue gives null for empty fields, getJournalEntry
 * gives the newest entries with their "<time> - <user> (<kind>)" header line).
 */
'use strict';

var JOURNAL_KINDS = { comments: 'Additional comments', work_notes: 'Work notes' };

function FakeElement(record, field) {
    this._record = record;
    this._field = field;
}

FakeElement.prototype.getValue = function () {
    return this._record.getValue(this._field);
};

FakeElement.prototype.getDisplayValue = function () {
    return this._record.getDisplayValue(this._field);
};

FakeElement.prototype.changes = function () {
    return this._record._changed.indexOf(this._field) >= 0;
};

FakeElement.prototype.toString = function () {
    var v = this.getValue();
    return v === null ? '' : v;
};

// Newest `count` journal entries, newest first, as ServiceNow formats them.
FakeElement.prototype.getJournalEntry = function (count) {
    var entries = (this._record._journal[this._field] || []).slice().reverse();
    if (count > 0) {
        entries = entries.slice(0, count);
    }
    var kind = JOURNAL_KINDS[this._field] || this._field;
    return entries
        .map(function (e) {
            return e.on + ' - ' + e.by + ' (' + kind + ')\n' + e.text + '\n\n';
        })
        .join('');
};

/*
 * new FakeGlideRecord(table, {
 *   values: {field: raw value},          getValue (sys_id is the unique value)
 *   display: {field: display value},     getDisplayValue (default: the raw value)
 *   changed: [field, ...],               which elements' changes() is true
 *   journal: {comments: [{on, by, text}], work_notes: [...]},  oldest first
 *   operation: 'insert' | 'update'       operation(); isNewRecord() is insert
 * })
 */
function FakeGlideRecord(table, spec) {
    spec = spec || {};
    this._table = table;
    this._values = Object.assign({}, spec.values || {});
    this._display = Object.assign({}, spec.display || {});
    this._changed = (spec.changed || []).slice();
    this._journal = spec.journal || {};
    this._operation = spec.operation || 'update';
    var fields = Object.keys(this._values)
        .concat(Object.keys(this._journal))
        .concat(this._changed);
    for (var i = 0; i < fields.length; i++) {
        if (!(fields[i] in this)) {
            this[fields[i]] = new FakeElement(this, fields[i]);
        }
    }
}

FakeGlideRecord.prototype.getValue = function (field) {
    var v = this._values[field];
    return v === undefined || v === null || v === '' ? null : String(v);
};

FakeGlideRecord.prototype.getDisplayValue = function (field) {
    if (field in this._display) {
        return String(this._display[field]);
    }
    var v = this.getValue(field);
    return v === null ? '' : v;
};

FakeGlideRecord.prototype.getUniqueValue = function () {
    return this.getValue('sys_id');
};

FakeGlideRecord.prototype.getTableName = function () {
    return this._table;
};

FakeGlideRecord.prototype.isValidField = function (field) {
    return this[field] instanceof FakeElement;
};

FakeGlideRecord.prototype.operation = function () {
    return this._operation;
};

FakeGlideRecord.prototype.isNewRecord = function () {
    return this._operation === 'insert';
};

/*
 * The record after an update: `changes` are the new raw values (they become
 * changed elements), `journal` entries are appended (their fields become
 * changed), everything else is copied. Returns [current, previous].
 */
FakeGlideRecord.prototype.update = function (changes, journal) {
    var previous = new FakeGlideRecord(this._table, {
        values: this._values,
        display: this._display,
        journal: this._journal,
        operation: 'update'
    });
    var values = Object.assign({}, this._values, changes.values || {});
    var display = Object.assign({}, this._display, changes.display || {});
    var changed = Object.keys(changes.values || {}).filter(function (f) {
        return String(changes.values[f]) !== String(previous._values[f] === undefined ? '' : previous._values[f]);
    });
    var all = {};
    Object.keys(this._journal).forEach(function (f) {
        all[f] = this._journal[f].slice();
    }, this);
    Object.keys(journal || {}).forEach(function (f) {
        all[f] = (all[f] || []).concat([journal[f]]);
        changed.push(f);
    });
    var current = new FakeGlideRecord(this._table, {
        values: values,
        display: display,
        changed: changed,
        journal: all,
        operation: 'update'
    });
    return [current, previous];
};

module.exports = { FakeGlideRecord: FakeGlideRecord, FakeElement: FakeElement };
