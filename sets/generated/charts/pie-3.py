import matplotlib.pyplot as plt

labels = ["Cherries", "Grapes", "Apples", "Plums"]
shares = [50, 25, 15, 10]
fig, ax = plt.subplots(figsize=(6.4, 4.8))
ax.pie(shares, labels=labels, autopct="%d%%", startangle=90)
ax.set_title("Fruit sold (%)")
plt.tight_layout()
plt.show()
