# sqlite-gpt test harness, in the style of SQLite's testfixture.
#
#   do_execsql_test NAME SQL EXPECTED     flat list of result values
#   do_catchsql_test NAME SQL EXPECTED    {1 {error text}} or {0 {rows}}
#   do_eqp_test NAME SQL EXPECTED         EXPLAIN QUERY PLAN detail lines
#   do_test NAME SCRIPT EXPECTED          result of SCRIPT (run in caller)
#   do_near_test NAME ACTUAL EXPECTED TOL numbers or lists, absolute tolerance
#   skip_test NAME REASON
#
# EXPECTED of do_test/do_execsql_test may also be a pattern, as in SQLite:
# /REGEXP/ or *GLOB* (the whole value must match); do_catchsql_test also
# takes {1 /REGEXP/} or {1 *GLOB*} for the error text.
#
# Helpers: open_test_db ?-noext? ?FILE?, delete_test_db FILE, execsql,
# catchsql, test_model_dir NAME ?MKMODEL-ARGS...?, finish_test.
#
# Sourced by tests/all.tcl; a .test file may also source it itself (it is
# idempotent), so `tclsh tests/foo.test` works too.

package require sqlite3

if {![info exists ::tester_loaded]} {
  set ::tester_loaded 1

  # Everything is relative to the repository root, found from this file.
  set ::testdir [file dirname [file normalize [info script]]]
  set ::rootdir [file dirname $::testdir]
  set ::builddir [file join $::rootdir build]
  # The extension without its suffix: load_extension() adds .so/.dylib/.dll.
  # GPT_EXT names another build of it: `make test-asan` runs the suite on
  # build/asan/gpt, with the sanitizer runtime in LD_PRELOAD (tclsh is not
  # instrumented). The programs the tests start inherit the preload (a child
  # tclsh or sqlite3 shell may load GPT_EXT too), but not leak checking,
  # which is this process's: make or mkmodel need not free what they use.
  set ::gpt_ext [file join $::builddir gpt]
  if {[info exists ::env(GPT_EXT)] && $::env(GPT_EXT) ne ""} {
    set ::gpt_ext $::env(GPT_EXT)
  }
  if {[info exists ::env(LD_PRELOAD)] && [string match *san* $::env(LD_PRELOAD)]} {
    set ::env(ASAN_OPTIONS) detect_leaks=0
  }

  set ::nPass 0
  set ::nFail 0
  set ::nSkip 0
  set ::failList {}
  set ::skipList {}
  set ::verbose 0
}

# ---------------------------------------------------------------- results

proc tester_pass {name} {
  incr ::nPass
  if {$::verbose} { puts "  $name... Ok" }
}

proc tester_fail {name msg} {
  incr ::nFail
  lappend ::failList $name
  puts "  $name... FAILED"
  foreach line [split $msg \n] { puts "    $line" }
}

# True when 'actual' matches 'expected': exact string equality, or the
# SQLite testfixture patterns /REGEXP/ and *GLOB*.
proc tester_match {expected actual} {
  if {[regexp {^/(.*)/$} $expected -> re]} {
    return [regexp -- "^(?:$re)\$" $actual]
  }
  if {[string length $expected] > 1 && [regexp {^\*.*\*$} $expected]} {
    return [string match $expected $actual]
  }
  return [expr {$actual eq $expected}]
}

proc tester_check {name actual expected} {
  if {[tester_match $expected $actual]} {
    tester_pass $name
  } else {
    tester_fail $name "Expected: \[$expected\]\n     Got: \[$actual\]"
  }
}

# ---------------------------------------------------------------- tests

proc do_test {name script expected} {
  if {[catch {uplevel 1 $script} actual opts]} {
    # A script that raises is a failure unless the error itself is expected.
    set actual "error: $actual"
    if {![tester_match $expected $actual]} {
      tester_fail $name "Expected: \[$expected\]\n   Error: [dict get $opts -errorinfo]"
      return
    }
  }
  tester_check $name $actual $expected
}

proc execsql {sql {db db}} {
  # In the caller's frame, so $var parameters bind to its variables.
  return [uplevel 1 [list $db eval $sql]]
}

proc catchsql {sql {db db}} {
  set rc [catch {uplevel 1 [list $db eval $sql]} res]
  return [list $rc $res]
}

proc do_execsql_test {name sql {expected {}}} {
  # [list {*}...] normalizes EXPECTED's whitespace, as SQLite's tester does.
  uplevel 1 [list do_test $name [list execsql $sql] [list {*}$expected]]
}

# EXPECTED {1 /REGEXP/} or {1 *GLOB*} matches the error text by pattern.
proc do_catchsql_test {name sql expected} {
  set expected [list {*}$expected]
  lassign $expected erc emsg
  if {[llength $expected] == 2 && [regexp {^(/.*/|\*.+\*)$} $emsg]} {
    if {[catch {uplevel 1 [list catchsql $sql]} actual]} {
      tester_fail $name "Expected: \[$expected\]\n   Error: $actual"
    } elseif {[lindex $actual 0] eq $erc && [tester_match $emsg [lindex $actual 1]]} {
      tester_pass $name
    } else {
      tester_fail $name "Expected: \[$expected\]\n     Got: \[$actual\]"
    }
    return
  }
  uplevel 1 [list do_test $name [list catchsql $sql] $expected]
}

# Each line trimmed, blank lines dropped, joined with newlines.
proc tester_lines {text} {
  set out {}
  foreach line [split $text \n] {
    set line [string trim $line]
    if {$line ne ""} { lappend out $line }
  }
  return [join $out \n]
}

# The detail column of EXPLAIN QUERY PLAN, one line per row.
proc eqp_lines {sql {db db}} {
  set out {}
  foreach {id parent notused detail} [uplevel 1 [list $db eval "EXPLAIN QUERY PLAN $sql"]] {
    lappend out $detail
  }
  return [join $out \n]
}

proc do_eqp_test {name sql expected} {
  if {[catch {uplevel 1 [list eqp_lines $sql]} actual]} {
    tester_fail $name "Expected: \[[tester_lines $expected]\]\n   Error: $actual"
    return
  }
  tester_check $name [tester_lines $actual] [tester_lines $expected]
}

# ACTUAL and EXPECTED are numbers, or lists of numbers of the same length;
# every |actual - expected| must be <= TOL.
proc do_near_test {name actual expected tol} {
  if {[llength $actual] != [llength $expected]} {
    tester_fail $name "Expected [llength $expected] values, got [llength $actual]\nExpected: \[$expected\]\n     Got: \[$actual\]"
    return
  }
  set worst -1.0
  set worstI -1
  set i 0
  foreach a $actual e $expected {
    if {![string is double -strict $a] || ![string is double -strict $e]} {
      tester_fail $name "Not a number at index $i: expected \[$e\], got \[$a\]"
      return
    }
    # NaN (an error in Tcl's expr) fails as an infinite difference.
    if {[catch {expr {abs(double($a) - double($e))}} d]} { set d Inf }
    if {!($d <= $tol)} {
      if {$worstI < 0 || !($d <= $worst)} { set worst $d; set worstI $i }
    }
    incr i
  }
  if {$worstI < 0} {
    tester_pass $name
    return
  }
  set a [lindex $actual $worstI]
  set e [lindex $expected $worstI]
  set msg "Expected: $e (+/- $tol)\n     Got: $a (|diff| $worst at index $worstI of $i)"
  if {$i > 1 && $i <= 8} { append msg "\nExpected: \[$expected\]\n     Got: \[$actual\]" }
  tester_fail $name $msg
}

proc skip_test {name reason} {
  incr ::nSkip
  lappend ::skipList [list $name $reason]
  puts "  $name... skipped ($reason)"
}

# ---------------------------------------------------------------- databases

# Relative FILEs live under build/testdb/ so tests leave nothing in the tree.
proc test_db_path {file} {
  if {$file eq ":memory:" || $file eq "" || [file pathtype $file] ne "relative"} {
    return $file
  }
  file mkdir [file join $::builddir testdb]
  return [file join $::builddir testdb $file]
}

proc delete_test_db {file} {
  set path [test_db_path $file]
  foreach suffix {"" -journal -wal -shm} {
    file delete -force -- "$path$suffix"
  }
}

# Opens db (closing any previous one) and loads build/gpt unless -noext.
proc open_test_db {args} {
  set loadExt 1
  if {[lindex $args 0] eq "-noext"} {
    set loadExt 0
    set args [lrange $args 1 end]
  }
  set file [expr {[llength $args] ? [lindex $args 0] : ":memory:"}]
  catch {db close}
  sqlite3 db [test_db_path $file]
  if {$loadExt} {
    db enable_load_extension 1
    set ext $::gpt_ext
    db eval {SELECT load_extension($ext)}
  }
  return db
}

# SQLite test files end with this; closes the default db.
proc finish_test {} {
  catch {db close}
}

# ---------------------------------------------------------------- models

# The mkmodel arguments of a golden model, from tests/golden/NAME.json (the
# single source of truth: the goldens were computed from exactly that model).
proc golden_mkmodel_args {name} {
  set path [file join $::testdir golden $name.json]
  if {![file exists $path]} {
    error "test_model_dir: no golden file for model '$name' ($path)"
  }
  set fd [open $path r]
  fconfigure $fd -encoding utf-8
  set json [read $fd]
  close $fd
  sqlite3 tester_json :memory:
  set res [tester_json eval {
    SELECT value FROM json_each($json, '$.mkmodel_args') ORDER BY key
  }]
  tester_json close
  return $res
}

# Folder of the generated test model NAME (build/models/NAME), generating it
# with build/mkmodel on first use. Without extra arguments NAME must have a
# golden file; with them (hostile tests) they are the mkmodel arguments.
# Regenerated when the arguments or the mkmodel binary changed.
proc test_model_dir {name args} {
  if {[llength $args] == 0} { set args [golden_mkmodel_args $name] }
  set mkmodel [file join $::builddir mkmodel]
  if {![file exists $mkmodel]} {
    exec make -C $::rootdir build/mkmodel >@ stdout 2>@ stderr
  }
  set dir [file join $::builddir models $name]
  set stamp [file join $dir mkmodel.args]
  set fresh 0
  if {[file exists $stamp] && [file mtime $stamp] >= [file mtime $mkmodel]} {
    set fd [open $stamp r]
    set old [string trim [read $fd]]
    close $fd
    set fresh [expr {$old eq $args}]
  }
  if {!$fresh} {
    file delete -force -- $dir
    file mkdir $dir
    exec $mkmodel $dir {*}$args
    set fd [open $stamp w]
    puts $fd $args
    close $fd
  }
  return $dir
}
