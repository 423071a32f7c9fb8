print("swiftvm")
