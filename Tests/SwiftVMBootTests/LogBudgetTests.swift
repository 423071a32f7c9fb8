import Testing
import SwiftVMMemory
import SwiftVMTestSupport

@Suite("The log's flood limit")
struct LogBudgetTests {
    @Test("a flood within one second is cut at the limit and the drop is reported once, later")
    func flood() {
        var budget = LogBudget(perSecond: 20)
        let admitted = (0..<500).filter { _ in budget.admit(atSecond: 7) }.count
        #expect(admitted == 20)
        let note = budget.takeDroppedNote()
        #expect(note == "480 log lines were dropped (more than 20 a second)")
        let again = budget.takeDroppedNote()
        #expect(again == nil)
    }

    @Test("each new second starts a fresh allowance")
    func nextSecond() {
        var budget = LogBudget(perSecond: 2)
        let first = [budget.admit(atSecond: 1), budget.admit(atSecond: 1), budget.admit(atSecond: 1)]
        #expect(first == [true, true, false])
        let next = budget.admit(atSecond: 2)
        #expect(next)
        let note = budget.takeDroppedNote()
        #expect(note?.contains("1 log lines") == true)
    }
}
