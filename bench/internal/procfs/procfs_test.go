package procfs

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	// A command name with spaces and a ')' must not shift the fields.
	line := "4242 (flotilla (x) cp) S 1 4242 4242 0 -1 4194560 1234 0 0 0 731 219 0 0 20 0 12 0 100 1000000 2500 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	u, s, err := ParseStat(line)
	if err != nil {
		t.Fatal(err)
	}
	if u != 731 || s != 219 {
		t.Errorf("ParseStat = utime %d, stime %d; want 731, 219", u, s)
	}
	if got := TicksToDuration(u + s); got != 9500*time.Millisecond {
		t.Errorf("TicksToDuration(950) = %v, want 9.5s", got)
	}
	for _, bad := range []string{"", "4242 flotilla S 1", "4242 (cp) S 1 2 3", "4242 (cp) S 1 4242 4242 0 -1 4194560 1234 0 0 0 x 219 0"} {
		if _, _, err := ParseStat(bad); err == nil {
			t.Errorf("ParseStat(%q) succeeded, want an error", bad)
		}
	}
}

func TestParseStatusRSS(t *testing.T) {
	status := "Name:\tflotilla-contro\nVmPeak:\t 1300000 kB\nVmRSS:\t  388744 kB\nRssAnon:\t  300000 kB\n"
	got, err := ParseStatusRSS(strings.NewReader(status))
	if err != nil {
		t.Fatal(err)
	}
	if got != 388744*1024 {
		t.Errorf("ParseStatusRSS = %d, want %d", got, 388744*1024)
	}
	for _, bad := range []string{"Name:\tx\n", "VmRSS:\t12 MB\n", "VmRSS:\tmany kB\n"} {
		if _, err := ParseStatusRSS(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseStatusRSS(%q) succeeded, want an error", bad)
		}
	}
}

func TestParseOpenFileLimit(t *testing.T) {
	limits := `Limit                     Soft Limit           Hard Limit           Units     
Max cpu time              unlimited            unlimited            seconds   
Max open files            20000                20000                files     
Max locked memory         8388608              8388608              bytes     
`
	n, err := ParseOpenFileLimit(strings.NewReader(limits))
	if err != nil || n != 20000 {
		t.Errorf("ParseOpenFileLimit = %d, %v; want 20000", n, err)
	}
	n, err = ParseOpenFileLimit(strings.NewReader("Max open files            unlimited            unlimited            files\n"))
	if err != nil || n != -1 {
		t.Errorf("unlimited: ParseOpenFileLimit = %d, %v; want -1", n, err)
	}
	if _, err := ParseOpenFileLimit(strings.NewReader("Max cpu time unlimited unlimited seconds\n")); err == nil {
		t.Error("ParseOpenFileLimit without the line succeeded, want an error")
	}
}

func TestParseCPUInfo(t *testing.T) {
	info := "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n"
	model, cores, err := ParseCPUInfo(strings.NewReader(info))
	if err != nil || model != "AMD EPYC 7B13" || cores != 2 {
		t.Errorf("ParseCPUInfo = %q, %d, %v; want AMD EPYC 7B13, 2", model, cores, err)
	}
	model, cores, err = ParseCPUInfo(strings.NewReader("processor\t: 0\nBogoMIPS\t: 50.00\n"))
	if err != nil || model != "unknown CPU" || cores != 1 {
		t.Errorf("without a model name: %q, %d, %v; want unknown CPU, 1", model, cores, err)
	}
	if _, _, err := ParseCPUInfo(strings.NewReader("")); err == nil {
		t.Error("ParseCPUInfo of nothing succeeded, want an error")
	}
}

func TestMachineString(t *testing.T) {
	m := Machine{CPUModel: "AMD EPYC", Cores: 2, MemTotal: 24 << 30}
	if got, want := m.String(), "AMD EPYC, 2 cores, 24.0 GiB"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
}

func TestCPUCores(t *testing.T) {
	t0 := time.Unix(100, 0)
	from := Sample{At: t0, CPU: time.Second}
	to := Sample{At: t0.Add(10 * time.Second), CPU: 6 * time.Second}
	if got := CPUCores(from, to); got != 0.5 {
		t.Errorf("CPUCores = %v, want 0.5", got)
	}
	if got := CPUCores(to, to); got != 0 {
		t.Errorf("CPUCores over no time = %v, want 0", got)
	}
}

// TestReadSelf reads this test process: the real files parse.
func TestReadSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc on this system")
	}
	s, err := Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.RSS <= 0 {
		t.Errorf("RSS = %d, want positive", s.RSS)
	}
	if _, err := OpenFileLimit(os.Getpid()); err != nil {
		t.Error(err)
	}
	m, err := ReadMachine()
	if err != nil {
		t.Fatal(err)
	}
	if m.Cores < 1 || m.MemTotal <= 0 {
		t.Errorf("ReadMachine = %+v", m)
	}
}

func TestParseLoadAvg(t *testing.T) {
	v, err := ParseLoadAvg("8.48 8.23 6.65 3/612 31337\n")
	if err != nil || v != 8.48 {
		t.Errorf("ParseLoadAvg = %v, %v; want 8.48", v, err)
	}
	for _, bad := range []string{"", "high 1 1"} {
		if _, err := ParseLoadAvg(bad); err == nil {
			t.Errorf("ParseLoadAvg(%q) succeeded, want an error", bad)
		}
	}
}
