# Runs the test suite: every tests/*.test, sorted, in this one interpreter.
#
#   tclsh tests/all.tcl                 all files
#   tclsh tests/all.tcl tokenizer       only tests/tokenizer.test
#   tclsh tests/all.tcl 'gen*' -v       glob filters; -v prints every test
#
# Ends with the line "N passed, N failed"; exits 1 when anything failed.

source [file join [file dirname [file normalize [info script]]] tester.tcl]

set filters {}
foreach a $argv {
  if {$a eq "-v" || $a eq "--verbose"} { set ::verbose 1 } else { lappend filters $a }
}

set files {}
foreach f [lsort [glob -nocomplain -directory $::testdir *.test]] {
  set stem [file rootname [file tail $f]]
  if {[llength $filters] == 0} { lappend files $f; continue }
  foreach pat $filters {
    if {$stem eq $pat || [string match $pat $stem]} { lappend files $f; break }
  }
}
if {[llength $files] == 0} {
  puts stderr "no test file matches: $filters"
  exit 1
}

# The SQLite the suite runs on. `make test-sqlite-latest` sets
# GPT_EXPECT_SQLITE: a run on another version (a wrong LD_LIBRARY_PATH) fails
# before anything else instead of testing the wrong library.
sqlite3 tester_version :memory:
set ::sqlite_version [tester_version one {SELECT sqlite_version()}]
tester_version close
puts "SQLite $::sqlite_version"
if {[info exists ::env(GPT_EXPECT_SQLITE)] && $::env(GPT_EXPECT_SQLITE) ne ""
    && $::env(GPT_EXPECT_SQLITE) ne $::sqlite_version} {
  puts stderr "expected SQLite $::env(GPT_EXPECT_SQLITE), running on $::sqlite_version"
  puts "\n0 passed, 1 failed"
  exit 1
}

# Databases of relative names start empty on every run.
file delete -force -- [file join $::builddir testdb]

foreach f $files {
  set tail [file tail $f]
  puts "$tail:"
  set p0 $::nPass; set f0 $::nFail; set s0 $::nSkip
  # A file that raises counts as one failure; the others still run.
  if {[catch {uplevel #0 [list source $f]} msg opts]} {
    tester_fail "$tail (error)" [dict get $opts -errorinfo]
  }
  catch {db close}
  # A file's databases and GGUF files go once it passes, so a run needs disk
  # for one file's scratch at a time (a full run left 2 GB); a failing file's
  # stay for a look. GPT_KEEP_TESTDB=1 keeps them all.
  if {$::nFail == $f0 && ![info exists ::env(GPT_KEEP_TESTDB)]} {
    file delete -force -- [file join $::builddir testdb] [file join $::builddir gguf]
  }
  puts [format "%s: %d passed, %d failed, %d skipped" $tail \
      [expr {$::nPass - $p0}] [expr {$::nFail - $f0}] [expr {$::nSkip - $s0}]]
}

if {[llength $::skipList]} {
  puts "\nSkipped:"
  foreach s $::skipList { puts "  [lindex $s 0]: [lindex $s 1]" }
}
if {[llength $::failList]} {
  puts "\nFailures:"
  foreach n $::failList { puts "  $n" }
}
puts "\n$::nPass passed, $::nFail failed"
exit [expr {$::nFail > 0}]
